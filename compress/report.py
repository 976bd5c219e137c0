"""Before/after benchmark rows of a compression run (``RUN/compression_rows.jsonl``).

One row per network (parent, pruned, fine-tuned, teacher, students, fp32 and int8 ONNX) in the benchmark's
row format (:mod:`benchmark.rows`): parameters, GMACs (fvcore) at ``bench_size``, CPU latency and FPS at
``bench_size`` (batch 1, few iterations by default — figures of record come from a quiet machine), and mIoU
when evaluated, so ``terralite leaderboard RUN/compression_rows.jsonl`` shows compressed models beside their
parents. Extra fields: ``role`` (parent, pruned, finetuned, teacher, distilled, alone, fp32, int8),
``miou_split`` and, for ONNX files, ``file_bytes``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from benchmark.runners.base import Runner

ROWS_FILE = "compression_rows.jsonl"
BENCH_WARMUP = 2


class OnnxFileRunner(Runner):
    """Times an existing ONNX file (an fp32 export or its int8 QDQ version) with ONNX Runtime on the CPU.

    The benchmark's ``OnnxRuntimeRunner`` exports a module itself; a quantised graph exists only as a file.
    A graph with dynamic H, W is timed through a copy whose input is fixed to ``1 x C x size x size``, as
    a fixed-shape export would be (ONNX Runtime then plans for that one shape).
    """

    name = "onnxruntime"
    precisions = ("fp32", "int8")

    def __init__(self, path: str | Path, **conditions):
        super().__init__(nn.Identity(), **conditions)  # the base class keeps a module; here the graph is the file
        import onnx
        import onnxruntime as ort

        model = onnx.load(str(path))
        dims = model.graph.input[0].type.tensor_type.shape.dim
        for dim, value in zip(dims, (self.network_batch, self.in_channels, self.size, self.size)):
            dim.ClearField("dim_param")
            dim.dim_value = value
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.input_name: x.contiguous().numpy()})[0])


@dataclass
class Entry:
    """One network to report: a module, or an ONNX file (with the module it came from, for the counts)."""

    name: str
    spec: dict
    model: nn.Module | None = None
    onnx: Path | None = None
    precision: str = "fp32"
    miou: float | None = None
    role: str = ""


def measure_entry(entry: Entry, bench_size: int, iterations: int, eval_split: str | None = None) -> dict:
    """The benchmark row of one entry: eager PyTorch on the CPU for a module, ONNX Runtime for a file."""
    from benchmark.bench import benchmark_model
    from benchmark.profiler import profile_model

    profile = profile_model(entry.model.cpu(), bench_size, entry.spec["in_channels"]) if entry.model is not None else None
    if entry.onnx is None:
        row = benchmark_model(entry.model, entry.spec, size=bench_size, runtime="torch", device="cpu", warmup=BENCH_WARMUP,
                              iters=iterations, profile=profile)[0]
    else:
        row = _onnx_row(entry, profile, bench_size, iterations)
    row.update({"model": entry.name, "miou": entry.miou, "role": entry.role,
                "miou_split": eval_split if entry.miou is not None else None})
    if entry.onnx is not None:
        row["file_bytes"] = entry.onnx.stat().st_size
    return row


def _onnx_row(entry: Entry, profile: dict | None, bench_size: int, iterations: int) -> dict:
    from benchmark.rows import ROW_FIELDS
    from terralite.device import device_name
    from terralite.models import spec_hash
    from terralite.versions import library_versions

    runner = OnnxFileRunner(entry.onnx, size=bench_size, in_channels=entry.spec["in_channels"], device="cpu", precision=entry.precision)
    stats = runner.measure(BENCH_WARMUP, iterations)
    row = {
        "model": entry.name, "spec_hash": spec_hash(entry.spec),
        "params_m": round(profile["params_m"], 4) if profile else None, "gmacs": round(profile["gmacs"], 3) if profile else None,
        "flop_counter": profile["flop_counter"] if profile else None, "input_size": bench_size, "batch": 1,
        "device": device_name(torch.device("cpu")), "runtime": runner.label, "precision": entry.precision, "tta": "none",
        "latency_ms_mean": round(stats.latency_ms_mean, 4), "latency_ms_median": round(stats.latency_ms_median, 4),
        "latency_ms_p90": round(stats.latency_ms_p90, 4), "fps": round(stats.fps, 3), "peak_mem_mb": round(stats.peak_mem_mb, 1),
        "miou": None, "versions": library_versions(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    assert tuple(row) == ROW_FIELDS  # the same layout as benchmark.bench's rows
    return row


def write_compression_rows(run: str | Path, entries: list[Entry], *, bench_size: int = 1024, iterations: int = 10,
                           eval_split: str | None = None, log: Callable[[str], None] | None = None) -> Path:
    """Measure every entry and append its row to ``run/compression_rows.jsonl``; returns the file."""
    from benchmark.rows import write_rows

    rows = []
    for entry in entries:
        row = measure_entry(entry, bench_size, iterations, eval_split)
        rows.append(row)
        if log is not None:
            counts = f"{row['params_m']:.3f} M params, {row['gmacs']:.2f} GMACs, " if row["params_m"] is not None else ""
            log(f"{entry.name} ({row['runtime']} {entry.precision}): {counts}{row['latency_ms_mean']:.1f} ms on CPU at {bench_size} px"
                + (f", mIoU {entry.miou:.4f}" if entry.miou is not None else ""))
    return write_rows(Path(run) / ROWS_FILE, rows)
