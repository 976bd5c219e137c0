"""Atomic file writes: write beside the target, then rename over it.

A kill at any moment leaves either the old file or the new one under the final name, never half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import tempfile
from pathlib import Path
from typing import Iterator

from terralite.errors import TerraLiteError


def ensure_parent(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path, with a clear error when its folder does not exist."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise TerraLiteError(f"output folder {parent} does not exist: create it first or choose another path for {path.name}")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to ``path`` when the block succeeds.

    The temporary name keeps the target's suffix (``suffix`` overrides it) so that writers that look at
    the extension (GDAL drivers, ``torch.save``) behave as for the final name. On error it is removed.
    """
    path = ensure_parent(path)
    _remove_stale_temporaries_of(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + (suffix or path.suffix), dir=path.parent)
    # the writer holds an flock on its temporary while it lives: a later writer of the same target removes only
    # temporaries nobody holds (left by a killed process: the OS dropped its lock)
    fcntl.flock(fd, fcntl.LOCK_EX)
    tmp_path = Path(tmp)
    # mkstemp creates the file private (0600); give the result the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def _remove_stale_temporaries_of(path: Path) -> None:
    """Remove the temporaries of ``path`` (``.NAME.*.tmp*`` beside it) whose writer died (no flock held on them)."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"):
        try:
            fd = os.open(stale, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live writer holds it
        else:
            stale.unlink(missing_ok=True)
        finally:
            os.close(fd)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files :func:`atomic_path` left in ``folder`` (and its sub-folders) when a process
    was killed mid-write; returns them. Call it only where no other writer is active (e.g. a run folder at start)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.rglob(".*.tmp*") if p.is_file() and ".tmp" in p.name]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
