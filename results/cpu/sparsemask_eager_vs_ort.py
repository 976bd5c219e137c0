"""SparseMask: eager PyTorch (folded eval path) and ONNX Runtime timed side by side, CPU, fp32, 1x3x1024x1024.

``allocator`` in each row: "kept" (the runners keep freed memory for reuse, terralite.cpu_allocator, the default
since 2026-12-07) or "user" (glibc as the environment set it, e.g. ``MALLOC_MMAP_MAX_=65536``, glibc's default)."""
import json, sys
from terralite.benchmark.runners import build_runner
from terralite.benchmark.runners.base import measure_side_by_side
from terralite.cpu_allocator import keep_freed_memory
from terralite.models import build_model
rows = []
for path in sys.argv[2:]:
    spec = json.load(open(path))
    model = build_model(spec).eval()
    runners = [build_runner(rt, model, size=1024, in_channels=3, device="cpu") for rt in ("torch", "onnxruntime")]
    eager, ort = measure_side_by_side(runners, warmup=3, iters=25)
    row = {"model": path, "eager_ms_median": eager.latency_ms_median, "eager_p10_p90": [eager.latency_ms_p10, eager.latency_ms_p90],
           "ort_ms_median": ort.latency_ms_median, "ort_p10_p90": [ort.latency_ms_p10, ort.latency_ms_p90],
           "eager_over_ort": eager.latency_ms_median / ort.latency_ms_median, "other_load": eager.other_load,
           "loadavg": eager.loadavg, "allocator": keep_freed_memory(), "warmup": 3, "iters": 25, "size": 1024, "precision": "fp32", "device": "cpu: AMD EPYC (2 threads)"}
    rows.append(row)
    print(json.dumps(row))
with open(sys.argv[1], "a") as f:
    for row in rows:
        f.write(json.dumps(row) + "\n")
