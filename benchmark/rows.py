"""The benchmark row: one flat record per measurement, stored as JSON Lines.

Rows are the data; Markdown, CSV, HTML and plots are rendered from them (:mod:`terralite.benchmark.leaderboard`).
Field meanings are listed in ``results/README.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from terralite.atomic import ensure_parent, write_text_atomic
from terralite.errors import TerraLiteError

LEGACY_ROW_FIELDS = (
    "model", "spec_hash", "params_m", "gmacs", "flop_counter", "input_size", "batch", "device", "runtime",
    "precision", "tta", "latency_ms_mean", "latency_ms_median", "latency_ms_p90", "fps", "peak_mem_mb", "miou",
    "versions", "date",
)
"""The fields of the first row format: files that hold only these still read (the newer fields are None)."""
ROW_FIELDS = (
    "model", "spec_hash", "params_m", "gmacs", "flop_counter", "gmacs_flagged", "input_size", "batch", "device",
    "runtime", "precision", "tta", "latency_ms_mean", "latency_ms_median", "latency_ms_p10", "latency_ms_p90", "fps",
    "warmup", "iters", "loadavg", "cpus", "peak_mem_mb", "miou", "versions", "date",
)
"""Fields of a row. ``fps`` = 1000 / median latency x batch (a few slow calls on a busy machine do not move it);
``latency_ms_p10``/``p90`` show the spread; ``warmup``/``iters`` the calls made; ``loadavg`` the 1-minute load
average of the machine (the larger of its values before and after the timing) and ``cpus`` its processor count;
``gmacs_flagged`` is True when the two MAC counters disagree (:data:`terralite.benchmark.profiler.DISAGREEMENT_FLAG_PCT`)."""
CONDITION_FIELDS = ("input_size", "batch", "device", "runtime", "precision")
"""The conditions a measurement was taken under; only rows equal in all of them are ranked together."""


def check_row(row: dict, source: str = "row") -> dict:
    """``row`` if it has every field of :data:`ROW_FIELDS`; a row of the first format gets the newer ones as None."""
    missing = [f for f in LEGACY_ROW_FIELDS if f not in row]
    if missing:
        raise TerraLiteError(f"{source} is not a TerraLite benchmark row: fields {', '.join(missing)} are missing; regenerate it with terralite bench")
    for field in ROW_FIELDS:
        row.setdefault(field, None)
    return row


def write_rows(path: str | Path, rows: Iterable[dict]) -> Path:
    """Append ``rows`` to the JSONL file ``path`` (created if absent).

    The file is rewritten whole through a temporary file and a rename, so a kill never leaves a
    half-written line; run one writer per file at a time.
    """
    path = ensure_parent(path)
    lines = [json.dumps(check_row(dict(row)), sort_keys=False) for row in rows]
    existing = path.read_text() if path.is_file() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"
    write_text_atomic(path, existing + "".join(line + "\n" for line in lines))
    return path


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a JSONL file, each checked for every field of :data:`ROW_FIELDS`."""
    path = Path(path)
    if not path.is_file():
        raise TerraLiteError(f"benchmark file {path} does not exist; create it with terralite bench --out {path}")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TerraLiteError(f"{path}:{number} is not valid JSON ({exc.msg}); remove or regenerate that line") from None
        rows.append(check_row(row, f"{path}:{number}"))
    return rows


def conditions_file_name(device: str, runtime: str, precision: str, size: int, batch: int = 1) -> str:
    """A file name that carries the conditions, e.g. ``bench_cpu_onnxruntime_fp32_1024.jsonl``."""
    name = f"bench_{device}_{runtime}_{precision}_{size}" + (f"_b{batch}" if batch != 1 else "")
    return "".join(c if c.isalnum() or c in "-_.+" else "-" for c in name) + ".jsonl"
