"""Reading architecture JSON, the part every search space shares: parsing, files and format versions.

Each space writes its architectures with an integer ``format_version`` (numbered per space) and reads every
version it ever wrote, migrating old ones in memory. A file without the field was written before versions
existed and reads as version 1. A version newer than the code knows is refused rather than guessed at: an
unknown field could change what gets built.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from terralite.errors import TerraLiteError

FORMAT_VERSION_KEY = "format_version"


def parse_json(text: str, source: str) -> Any:
    """``json.loads`` with an error that names ``source`` and the line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TerraLiteError(f"{source} is not valid JSON ({exc.msg} at line {exc.lineno})") from None


def read_arch_file(path: str | Path, kind: str) -> tuple[Any, str]:
    """``(architecture, source)`` of a file holding a bare architecture or a model spec of ``kind``.

    ``source`` names the file (and the spec's ``arch`` field) for the validator's error messages.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise TerraLiteError(f"architecture file {path} does not exist") from None
    data = parse_json(text, f"architecture file {path}")
    if isinstance(data, dict) and data.get("kind") == kind:
        return data.get("arch"), f"{path} (field 'arch')"
    return data, str(path)


def read_format_version(arch: dict, current: int, source: str) -> int:
    """The format version of an architecture dict: 1 when absent, an error when malformed or newer than ``current``."""
    version = arch.get(FORMAT_VERSION_KEY, 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TerraLiteError(f"{source}: field 'format_version' must be a positive integer, got {version!r}")
    if version > current:
        raise TerraLiteError(f"{source}: format_version {version} is newer than this TerraLite reads (1..{current}); "
                             "upgrade TerraLite, or derive the architecture again with this version")
    return version
