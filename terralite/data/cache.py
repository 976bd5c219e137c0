"""A small JSON cache beside the data: normalisation statistics, sound-check verdicts, window lists.

Each entry is one file ``<folder>/.terralite-cache/<name>-<key>.json`` where ``<folder>`` is the data's home (an
OpenEarthMap root, the folder of a large raster) and ``<key>`` a hash of everything the value depends on — the
files read (relative path, size, modification time in ns) and the parameters (band selection, windows, ...).
Changing, adding or removing a file changes the key, so a stale entry is never read; old entries are
harmless and the folder may be deleted at any time.

Where the data's folder is not writable (a read-only dataset or mount; judged by the permission bits even for
root, so that a dataset made read-only stays untouched) entries go to a per-user folder,
``$XDG_CACHE_HOME/terralite/data/<folder name>-<hash of its absolute path>/`` (``~/.cache/terralite/...`` without
``XDG_CACHE_HOME``). Reads look beside the data first, then in the user folder. Files are written atomically
(temp file + rename); a file that does not parse, or holds another key, is ignored and rewritten. When neither
folder can be written the value is simply not cached (a warning says so).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import warnings
from pathlib import Path
from typing import Any

CACHE_DIRNAME = ".terralite-cache"
#: Bumped when the layout of cache entries changes; entries of another format are ignored.
FORMAT = 1


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/terralite``, or ``~/.cache/terralite``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "terralite"


def file_state(path: str | os.PathLike | None) -> list[int] | None:
    """``[size, mtime_ns]`` of a file, or None when it does not exist (or ``path`` is None)."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def fingerprint(payload: Any) -> str:
    """A short stable hash of a JSON-able payload."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def relative(path: str | os.PathLike, home: str | os.PathLike) -> str:
    """``path`` relative to ``home`` (so that a copied dataset keeps its keys)."""
    return os.path.relpath(os.path.abspath(path), os.path.abspath(home))


def _writable(folder: Path) -> bool:
    """May we write into ``folder``? Its permission bits must grant it (even to root) and the OS must agree."""
    try:
        st = folder.stat()
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or not os.access(folder, os.W_OK | os.X_OK):
        return False
    if st.st_uid == os.geteuid():
        bit = stat.S_IWUSR
    elif st.st_gid == os.getegid() or st.st_gid in os.getgroups():
        bit = stat.S_IWGRP
    else:
        bit = stat.S_IWOTH
    return bool(st.st_mode & bit)


class DataCache:
    """Cache entries of the data living in ``home`` (see the module docstring for where they go)."""

    def __init__(self, home: str | os.PathLike):
        self.home = Path(os.path.abspath(home))

    @property
    def local_dir(self) -> Path:
        return self.home / CACHE_DIRNAME

    @property
    def user_dir(self) -> Path:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", self.home.name) or "root"
        return user_cache_dir() / "data" / f"{name}-{fingerprint(str(self.home))[:12]}"

    def _local_writable(self) -> bool:
        return _writable(self.local_dir) if self.local_dir.exists() else _writable(self.home)

    def path_of(self, name: str, key: str, folder: Path) -> Path:
        return folder / f"{name}-{key}.json"

    def load(self, name: str, key: str) -> Any | None:
        """The value stored under ``name``/``key``, or None (absent, corrupt, or another key)."""
        for folder in (self.local_dir, self.user_dir):
            path = self.path_of(name, key, folder)
            try:
                entry = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if (isinstance(entry, dict) and entry.get("format") == FORMAT and entry.get("name") == name
                    and entry.get("key") == key and "value" in entry):
                return entry["value"]
        return None

    def store(self, name: str, key: str, value: Any) -> Path | None:
        """Write ``value`` atomically beside the data, else in the user folder; the path written, or None."""
        from terralite.atomic import write_text_atomic

        text = json.dumps({"format": FORMAT, "name": name, "key": key, "value": value}, indent=1) + "\n"
        folders = ([self.local_dir] if self._local_writable() else []) + [self.user_dir]
        for folder in folders:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                return write_text_atomic(self.path_of(name, key, folder), text)
            except OSError:
                continue
        warnings.warn(f"could not write the data cache entry {name} (neither {self.local_dir} nor {self.user_dir} "
                      "is writable); it will be recomputed next time", stacklevel=3)
        return None
