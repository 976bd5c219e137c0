"""The benchmark row: one flat record per measurement, stored as JSON Lines.

Rows are the data; Markdown, CSV, HTML and plots are rendered from them (:mod:`terralite.benchmark.leaderboard`).
Field meanings are listed in ``results/README.md``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Iterable

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
    "warmup", "iters", "loadavg", "cpus", "other_load", "peak_mem_mb", "miou", "versions", "date",
)
"""Fields of a row. ``fps`` = 1000 / median latency x batch (a few slow calls on a busy machine do not move it);
``latency_ms_p10``/``p90`` show the spread; ``warmup``/``iters`` the calls made; ``loadavg`` the 1-minute load
average of the machine (the larger of its values before and after the timing) and ``cpus`` its processor count;
``other_load`` the processors' worth of work other processes did during the timed calls (the load average counts
the measurement's own threads; None where the system does not tell);
``gmacs_flagged`` is True when the two MAC counters disagree (:data:`terralite.benchmark.profiler.DISAGREEMENT_FLAG_PCT`)."""
CONDITION_FIELDS = ("input_size", "batch", "device", "runtime", "precision")
"""The conditions a measurement was taken under; only rows equal in all of them are ranked together."""


NUMBER_FIELDS = ("params_m", "gmacs", "latency_ms_mean", "latency_ms_median", "latency_ms_p10", "latency_ms_p90",
                 "fps", "loadavg", "other_load", "peak_mem_mb", "miou")
"""Measured quantities: a finite number >= 0, or null where not measured."""
COUNT_FIELDS = ("input_size", "batch", "warmup", "iters", "cpus")
"""Counts: an integer (``input_size`` and ``batch`` >= 1, the others >= 0), or null for the optional ones."""
REQUIRED_COUNTS = ("input_size", "batch")


def _field_problem(row: dict, field: str) -> str | None:
    """Why ``row[field]`` is not a usable value, or None."""
    value = row[field]
    if value is None:
        return "is missing (null)" if field in REQUIRED_COUNTS else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"is {json.dumps(value)[:40]}, not a number"
    if not math.isfinite(value):
        return f"is {value}"  # json.loads reads NaN and Infinity
    if field in COUNT_FIELDS:
        if value != int(value):
            return f"is {value}, not a whole number"
        if value < (1 if field in REQUIRED_COUNTS else 0):
            return f"is {value}"
    elif value < 0:
        return f"is negative ({value})"
    if field == "miou" and value > 1:
        return f"is {value}, above 1 (mIoU is a fraction)"
    return None


def check_row(row: dict, source: str = "row") -> dict:
    """``row`` if it has every field of :data:`ROW_FIELDS` with usable values; a row of the first format gets the
    newer ones as None. A string, NaN, infinite or negative measurement is refused naming the field."""
    if not isinstance(row, dict):
        raise TerraLiteError(f"{source} is not a TerraLite benchmark row (a JSON {type(row).__name__}, not an object); "
                             "remove that line or regenerate the file with terralite bench")
    missing = [f for f in LEGACY_ROW_FIELDS if f not in row]
    if missing:
        raise TerraLiteError(f"{source} is not a TerraLite benchmark row: fields {', '.join(missing)} are missing; regenerate it with terralite bench")
    for field in ROW_FIELDS:
        row.setdefault(field, None)
    for field in (*NUMBER_FIELDS, *COUNT_FIELDS):
        why = _field_problem(row, field)
        if why:
            raise TerraLiteError(f"{source}: field {field} {why}; fix that value (or set it to null if it was not "
                                 "measured) or regenerate the row with terralite bench")
    return row


def write_rows(path: str | Path, rows: Iterable[dict], replaces: Callable[[dict], bool] | None = None) -> Path:
    """Append ``rows`` to the JSONL file ``path`` (created if absent); lines already there for which
    ``replaces(row)`` is true are dropped first (a job that measures the same things again after a resume).

    The file is rewritten whole through a temporary file and a rename, so a kill never leaves a
    half-written line; run one writer per file at a time.
    """
    path = ensure_parent(path)
    lines = [json.dumps(check_row(dict(row)), sort_keys=False) for row in rows]
    existing = path.read_text() if path.is_file() else ""
    if replaces is not None:
        existing = "".join(line + "\n" for line in existing.splitlines() if line.strip() and not _replaced(line, replaces))
    if existing and not existing.endswith("\n"):
        existing += "\n"
    write_text_atomic(path, existing + "".join(line + "\n" for line in lines))
    return path


def _replaced(line: str, replaces: Callable[[dict], bool]) -> bool:
    """Does ``replaces`` drop this line? A line that is not a JSON object stays (:func:`read_rows` names it)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(row, dict) and replaces(row)


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
