"""Where ONNX Runtime spends a call: time per operator type, from its own profiler.

:func:`op_time_profile` runs a graph a few times with ``SessionOptions.enable_profiling`` and sums the
``Node`` events of the profile (microseconds, ``args.op_name``) by operator type, per call. Fused nodes are
reported under the operator ORT actually ran (``QLinearConv``, ``FusedConv``, ...), which is the point: it
shows what an int8 graph really executes and which float operators and quantize/dequantize pairs are left.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np


def op_time_profile(source: str | Path | bytes, input_shape: tuple[int, ...], *, runs: int = 3, threads: int | None = None) -> dict[str, float]:
    """Milliseconds per call spent in each operator type of ``source`` (a path or serialised graph) on the CPU,
    for a float32 input of ``input_shape``, averaged over ``runs`` calls after one untimed call; largest first."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="terralite-ortprof-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        data = source if isinstance(source, bytes) else str(source)
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)}
        session.run(None, feed)  # untimed, and out of the profile: it starts only on the next session
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        for _ in range(runs + 1):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_run: dict[str, list[float]] = defaultdict(list)
    calls = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    first_run_end = calls[0]["ts"] + calls[0]["dur"] if calls else 0  # the first profiled call warms caches: left out
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time") and event["ts"] >= first_run_end:
            per_run[event.get("args", {}).get("op_name", "?")].append(event["dur"] / 1000.0)
    totals = {op: sum(times) / runs for op, times in per_run.items()}
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))
