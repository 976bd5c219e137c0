"""Latency lookup tables: per-operator latencies measured in isolation, with the conditions they hold for.

A table is a JSON file::

    {"format": "terralite-latency-table", "version": 1,
     "conditions": {"search_space": "fasterseg", "device": "cpu: ... (2 threads)", "device_type": "cpu",
                    "runtime": "onnxruntime", "precision": "fp32", "size": 1024, "batch": 1, ...,
                    "versions": {...}, "date": "2026-11-21T12:00:00+00:00"},
     "entries": {"conv|H=128|W=128|cin=64|cout=96|stride=1": 12.5, ...}}

Entries map a key — an operator name and its shape fields, in a fixed order — to milliseconds. A search
states the conditions it needs (:data:`CHECKED_CONDITIONS`) and :meth:`LatencyTable.check_conditions`
refuses a table measured under others, naming each difference: a latency model timed on another device,
runtime or input size would silently steer the search towards the wrong networks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from terralite.atomic import write_text_atomic
from terralite.errors import TerraLiteError

FORMAT = "terralite-latency-table"
VERSION = 1
# the conditions a latency depends on; a search compares these with what it targets
CHECKED_CONDITIONS = ("search_space", "device_type", "runtime", "precision", "size", "batch", "in_channels", "num_classes", "space")


def entry_key(op: str, **fields: Any) -> str:
    """``op|k1=v1|k2=v2`` with the fields in the order given (callers use one fixed order per op)."""
    return "|".join([op] + [f"{k}={v}" for k, v in fields.items()])


@dataclass
class LatencyTable:
    """Operator latencies (ms) and the conditions under which they were measured."""

    conditions: dict
    entries: dict[str, float] = field(default_factory=dict)
    source: str = "latency table"

    def lookup(self, op: str, **fields: Any) -> float:
        key = entry_key(op, **fields)
        try:
            return self.entries[key]
        except KeyError:
            raise TerraLiteError(
                f"{self.source} has no entry {key!r}: it was measured for another search-space configuration; "
                "rebuild it with `terralite latency-table` for this preset"
            ) from None

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def check_conditions(self, expected: dict) -> None:
        """Raise TerraLiteError listing every checked condition where the table differs from ``expected``."""
        diffs = []
        for name in CHECKED_CONDITIONS:
            if name not in expected:
                continue
            have = self.conditions.get(name)
            if have != expected[name]:
                if isinstance(have, dict) and isinstance(expected[name], dict):
                    keys = sorted(k for k in set(have) | set(expected[name]) if have.get(k) != expected[name].get(k))
                    diffs.append(f"{name} fields {', '.join(keys)} differ")
                else:
                    diffs.append(f"{name}={have!r} (needed {expected[name]!r})")
        if diffs:
            raise TerraLiteError(
                f"{self.source} was measured under other conditions: {'; '.join(diffs)}. "
                "Measure a table for these conditions with `terralite latency-table` (or pass the matching one)"
            )

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "version": VERSION, "conditions": self.conditions,
                           "entries": dict(sorted(self.entries.items()))}, indent=1) + "\n"

    def save(self, path: str | Path) -> Path:
        return write_text_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise TerraLiteError(f"latency table {path} does not exist; measure one with `terralite latency-table`") from None
        except json.JSONDecodeError as exc:
            raise TerraLiteError(f"latency table {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise TerraLiteError(f"{path} is not a TerraLite latency table (its 'format' field is not {FORMAT!r})")
        if data.get("version") != VERSION:
            raise TerraLiteError(f"latency table {path} has version {data.get('version')!r}; this TerraLite reads version {VERSION}")
        conditions, entries = data.get("conditions"), data.get("entries")
        if not isinstance(conditions, dict) or not isinstance(entries, dict):
            raise TerraLiteError(f"latency table {path}: fields 'conditions' and 'entries' must be JSON objects")
        for key, ms in entries.items():
            if not isinstance(ms, (int, float)) or isinstance(ms, bool) or ms < 0:
                raise TerraLiteError(f"latency table {path}: entry {key!r} must be a non-negative number of ms, got {ms!r}")
        return cls(conditions, {k: float(v) for k, v in entries.items()}, source=f"latency table {path}")
