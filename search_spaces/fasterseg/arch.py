"""The FasterSeg architecture JSON: what a derived network is made of, readable and checked on load.

Example (widths are numerators over ``width_base``; scales are feature strides)::

    {"format_version": 1, "F": 12, "width_base": 12, "stem_width": 8, "head_width": 8,
     "branches": [
       {"scale": 32, "cells": [{"op": "conv", "scale": 8, "down": false, "width": 8},
                               {"op": "conv_2x", "scale": 8, "down": true, "width": 10}, ...]},
       {"scale": 16, "cells": [...]}]}

A cell operates at ``scale``; ``down`` makes it a stride-2 cell whose output is at twice the stride.
Its output has ``cell_channels(scale·(1+down), F, width)`` channels; a branch's last cell outputs the head
width. Validation never trusts the file: every error names the offending field.

``format_version`` 1 is the only format so far; files written before the field existed are version 1 too.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from terralite.search_spaces.arch_json import FORMAT_VERSION_KEY, parse_json, read_arch_file, read_format_version
from terralite.search_spaces.fasterseg.config import SCALES
from terralite.search_spaces.fasterseg.ops import PLAIN_OPS
from terralite.errors import TerraLiteError

FORMAT_VERSION = 1
ARCH_KEYS = ("F", "width_base", "stem_width", "head_width", "branches")
BRANCH_KEYS = ("scale", "cells")
CELL_KEYS = ("op", "scale", "down", "width")


def _fail(source: str, field: str, message: str) -> None:
    raise TerraLiteError(f"{source}: field {field!r} {message}")


def _check_keys(source: str, where: str, obj: Any, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    if not isinstance(obj, dict):
        _fail(source, where or "arch", f"must be a JSON object, got {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        _fail(source, f"{where}.{missing[0]}" if where else missing[0], "is missing")
    unknown = sorted(set(obj) - set(keys) - set(optional))
    if unknown:
        _fail(source, f"{where}.{unknown[0]}" if where else unknown[0], f"is not a known field (valid: {', '.join(optional + keys)})")


def _int(source: str, field: str, value: Any, low: int, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        _fail(source, field, f"must be an integer in {bound}, got {value!r}")
    return value


def validate_arch(arch: Any, source: str = "fasterseg arch") -> dict:
    """Check an architecture dict; return a copy with its ``format_version``, or raise TerraLiteError naming the field."""
    _check_keys(source, "", arch, ARCH_KEYS, optional=(FORMAT_VERSION_KEY,))
    read_format_version(arch, FORMAT_VERSION, source)
    _int(source, "F", arch["F"], 1)
    base = _int(source, "width_base", arch["width_base"], 1)
    _int(source, "stem_width", arch["stem_width"], 1, base)
    head = _int(source, "head_width", arch["head_width"], 1, base)
    branches = arch["branches"]
    if not isinstance(branches, list) or not branches:
        _fail(source, "branches", "must be a non-empty list of branches")
    seen_scales = []
    for b, branch in enumerate(branches):
        where = f"branches[{b}]"
        _check_keys(source, where, branch, BRANCH_KEYS)
        if branch["scale"] not in SCALES:
            _fail(source, f"{where}.scale", f"must be one of {list(SCALES)}, got {branch['scale']!r}")
        if branch["scale"] in seen_scales:
            _fail(source, f"{where}.scale", f"repeats scale {branch['scale']} of an earlier branch")
        seen_scales.append(branch["scale"])
        cells = branch["cells"]
        if not isinstance(cells, list) or not cells:
            _fail(source, f"{where}.cells", "must be a non-empty list of cells")
        scale = SCALES[0]
        for c, cell in enumerate(cells):
            cw = f"{where}.cells[{c}]"
            _check_keys(source, cw, cell, CELL_KEYS)
            if cell["op"] not in PLAIN_OPS:
                _fail(source, f"{cw}.op", f"must be one of {', '.join(PLAIN_OPS)}, got {cell['op']!r}")
            if cell["scale"] != scale:
                _fail(source, f"{cw}.scale", f"must be {scale} (the previous cells start at 8 and double at each down), got {cell['scale']!r}")
            if not isinstance(cell["down"], bool):
                _fail(source, f"{cw}.down", f"must be true or false, got {cell['down']!r}")
            if cell["down"] and scale == SCALES[-1]:
                _fail(source, f"{cw}.down", f"cannot be true at scale {scale} (the coarsest)")
            _int(source, f"{cw}.width", cell["width"], 1, base)
            scale = scale * 2 if cell["down"] else scale
        last = cells[-1]
        if last["down"]:
            _fail(source, f"{where}.cells[{len(cells) - 1}].down", "must be false: a branch ends with a cell that keeps its scale")
        if scale != branch["scale"]:
            _fail(source, f"{where}.scale", f"is {branch['scale']} but its cells end at scale {scale}")
        if last["width"] != head:
            _fail(source, f"{where}.cells[{len(cells) - 1}].width", f"must equal head_width={head} (a branch's last cell outputs the head width), got {last['width']!r}")
    return {FORMAT_VERSION_KEY: FORMAT_VERSION, **{k: copy.deepcopy(arch[k]) for k in ARCH_KEYS}}


def dumps_arch(arch: dict) -> str:
    """Canonical text of an architecture: 2-space indent, one cell per line, trailing newline."""
    arch = validate_arch(arch)
    lines = ["{"]
    for key in (FORMAT_VERSION_KEY,) + ARCH_KEYS[:-1]:
        lines.append(f'  "{key}": {json.dumps(arch[key])},')
    lines.append('  "branches": [')
    for b, branch in enumerate(arch["branches"]):
        lines.append(f'    {{"scale": {branch["scale"]}, "cells": [')
        for c, cell in enumerate(branch["cells"]):
            comma = "," if c < len(branch["cells"]) - 1 else ""
            lines.append("      " + json.dumps({k: cell[k] for k in CELL_KEYS}) + comma)
        lines.append("    ]}" + ("," if b < len(arch["branches"]) - 1 else ""))
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def loads_arch(text: str, source: str = "fasterseg arch") -> dict:
    """Parse and validate an architecture from JSON text."""
    return validate_arch(parse_json(text, source), source)


def load_arch(path: str | Path) -> dict:
    """Read an architecture from a file: a bare arch or a full model spec whose ``arch`` field it is."""
    return validate_arch(*read_arch_file(path, "fasterseg"))


def arch_spec(arch: dict, in_channels: int, num_classes: int, label: str) -> dict:
    """The full model spec of an architecture (what ``terralite train --model`` reads)."""
    return {"kind": "fasterseg", "label": label, "in_channels": in_channels, "num_classes": num_classes,
            "arch": validate_arch(arch)}


def dumps_spec(spec: dict) -> str:
    """Readable JSON of a full fasterseg spec, its arch in the canonical one-cell-per-line layout."""
    head = {k: v for k, v in spec.items() if k != "arch"}
    body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in head.items())
    arch_text = dumps_arch(spec["arch"]).rstrip("\n").replace("\n", "\n  ")
    return "{\n" + body + ',\n  "arch": ' + arch_text + "\n}\n"
