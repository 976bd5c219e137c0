"""Before/after benchmark rows of a compression run (``RUN/compression_rows.jsonl``).

One row per network (parent, pruned, fine-tuned, teacher, students, fp32 and int8 ONNX) in the benchmark's
row format (:mod:`terralite.benchmark.rows`): parameters, GMACs (fvcore) at ``bench_size``, CPU latency and FPS at
``bench_size`` (batch 1, few iterations by default — figures of record come from a quiet machine), and mIoU
when evaluated, so ``terralite leaderboard RUN/compression_rows.jsonl`` shows compressed models beside their
parents. Extra fields: ``role`` (parent, pruned, finetuned, teacher, distilled, alone, fp32, int8),
``miou_split`` and, for ONNX files, ``file_bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import nn

ROWS_FILE = "compression_rows.jsonl"
BENCH_WARMUP = 2


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
    """The benchmark row of one entry: eager PyTorch on the CPU for a module, ONNX Runtime for a file (with
    the counts of the module it came from, when there is one)."""
    from terralite.benchmark.bench import benchmark_model, benchmark_onnx_file
    from terralite.benchmark.profiler import profile_model

    profile = profile_model(entry.model.cpu(), bench_size, entry.spec["in_channels"]) if entry.model is not None else None
    if entry.onnx is None:
        row = benchmark_model(entry.model, entry.spec, size=bench_size, runtime="torch", device="cpu", warmup=BENCH_WARMUP,
                              iters=iterations, profile=profile)[0]
    else:
        row = benchmark_onnx_file(entry.onnx, size=bench_size, in_channels=entry.spec["in_channels"], runtime="onnxruntime",
                                  device="cpu", precision=entry.precision, warmup=BENCH_WARMUP, iters=iterations, profile=profile)[0]
    row.update({"model": entry.name, "miou": entry.miou, "role": entry.role,
                "miou_split": eval_split if entry.miou is not None else None})
    if entry.onnx is not None:
        row["file_bytes"] = entry.onnx.stat().st_size
    return row


def write_compression_rows(run: str | Path, entries: list[Entry], *, bench_size: int = 1024, iterations: int = 10,
                           eval_split: str | None = None, log: Callable[[str], None] | None = None) -> Path:
    """Measure every entry and append its row to ``run/compression_rows.jsonl``; returns the file. A row already
    there for the same role and network (a resumed or repeated job) is replaced, never duplicated."""
    from terralite.benchmark.rows import write_rows

    rows = []
    for entry in entries:
        row = measure_entry(entry, bench_size, iterations, eval_split)
        rows.append(row)
        if log is not None:
            counts = f"{row['params_m']:.3f} M params, " + (f"{row['gmacs']:.2f} GMACs, " if row["gmacs"] is not None else "")
            log(f"{entry.name} ({row['runtime']} {entry.precision}): {counts}{row['latency_ms_mean']:.1f} ms on CPU at {bench_size} px"
                + (f", mIoU {entry.miou:.4f}" if entry.miou is not None else ""))
    measured = {(row["role"], row["spec_hash"]) for row in rows}
    return write_rows(Path(run) / ROWS_FILE, rows, replaces=lambda row: (row.get("role"), row.get("spec_hash")) in measured)
