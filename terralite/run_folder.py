"""A run folder: resolved config, a per-epoch CSV (and TensorBoard when installed), a log file, ETA lines.

Every long job (training, searches, fine-tunes) writes through this, via the run loop of
:mod:`terralite.engine.run`, so all run folders look alike.
"""

from __future__ import annotations

import csv
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

from terralite.atomic import write_text_atomic
from terralite.config import dump_yaml


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--:--"
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


#: The lock file of a run folder: one process writes a run folder at a time.
LOCK_FILE = ".lock"


class RunLock:
    """An exclusive ``flock`` on ``<run>/.lock`` held while a process writes the run folder.

    The operating system drops the lock when its process ends in any way (also SIGKILL), so a stale lock file
    never blocks the next run; the file only records the holder's PID for the message a second process gets.
    Re-entrant within one process (a compression job's run folder and its own log, nested jobs): each
    acquisition is released once.
    """

    _held: dict[str, list] = {}  # resolved folder → [open lock file, acquisitions] of this process

    def __init__(self, folder: str | Path):
        import fcntl
        import os

        from terralite.errors import TerraLiteError

        self.folder = Path(folder)
        self.key = str(self.folder.resolve())
        self.released = False
        if self.key in self._held:
            self._held[self.key][1] += 1
            return
        lock_file = open(self.folder / LOCK_FILE, "a+")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "unknown"
            lock_file.close()
            raise TerraLiteError(f"run folder {folder} is being written by another terralite process (PID {holder}); wait for it "
                                 "to finish (or stop it) or choose another --out") from None
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(f"{os.getpid()}\n")
        lock_file.flush()
        self._held[self.key] = [lock_file, 1]

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        held = self._held[self.key]
        held[1] -= 1
        if held[1] == 0:
            del self._held[self.key]
            held[0].close()  # closing drops the flock


class RunFolder:
    """Owns ``<run>/config.yaml``, ``<run>/log.csv``, ``<run>/run.log`` and ``<run>/tb`` (optional), and holds the
    folder's :class:`RunLock` from creation to :meth:`close`: a second process on the same folder is refused."""

    def __init__(self, path: str | Path, enabled: bool = True, tensorboard: bool = True):
        self.path = Path(path)
        self.enabled = enabled  # False on non-zero ranks: they compute but never write
        self.lock = None
        if enabled:
            self.path.mkdir(parents=True, exist_ok=True)
            self.lock = RunLock(self.path)
        self.logger = logging.getLogger(f"terralite.run.{self.path.resolve()}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        if enabled and not self.logger.handlers:
            fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
            file_handler = logging.FileHandler(self.path / "run.log")
            file_handler.setFormatter(fmt)
            stream = logging.StreamHandler(sys.stderr)
            stream.setFormatter(fmt)
            self.logger.addHandler(file_handler)
            self.logger.addHandler(stream)
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.path / "tb"))
            except ImportError:  # TensorBoard is optional (extra "tensorboard")
                self._tb = None

    def save_config(self, cfg: Any, name: str = "config.yaml") -> None:
        if self.enabled:
            write_text_atomic(self.path / name, dump_yaml(cfg))

    def info(self, message: str) -> None:
        if self.enabled:
            self.logger.info(message)

    def log_row(self, row: dict, name: str = "log.csv") -> None:
        """Append one row to a CSV; the header is the first row's keys (later rows may not add keys)."""
        if not self.enabled:
            return
        path = self.path / name
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row) if new else _header(path), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self._tb is not None and "epoch" in row:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self._tb.add_scalar(key, value, row["epoch"])
            self._tb.flush()

    def trim_log(self, completed_epochs: int, name: str = "log.csv") -> None:
        """Keep the rows of the epochs a resumed checkpoint had completed (no duplicate rows after a resume)."""
        path = self.path / name
        if not self.enabled or not path.is_file():
            return
        lines = path.read_text().splitlines(keepends=True)
        kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) <= completed_epochs]
        if len(kept) != len(lines):
            write_text_atomic(path, "".join(kept))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        for handler in list(self.logger.handlers):
            handler.close()
            self.logger.removeHandler(handler)
        if self.lock is not None:
            self.lock.release()


def _header(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return next(csv.reader(f))


class EpochTimer:
    """Measures epochs and predicts the time left: ``epoch 3/10 ... 0:00:41 elapsed, ETA 0:01:36``."""

    def __init__(self, total_epochs: int, start_epoch: int = 0):
        self.total = total_epochs
        self.start_epoch = start_epoch
        self.started = time.monotonic()

    def eta(self, finished_epoch: int) -> tuple[float, float]:
        """(elapsed, remaining) seconds after ``finished_epoch`` (0-based) completed."""
        elapsed = time.monotonic() - self.started
        done = finished_epoch + 1 - self.start_epoch
        remaining = elapsed / max(done, 1) * (self.total - finished_epoch - 1)
        return elapsed, remaining

    def line(self, finished_epoch: int, metrics: dict) -> str:
        elapsed, remaining = self.eta(finished_epoch)
        parts = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        return f"epoch {finished_epoch + 1}/{self.total} {parts} | {format_duration(elapsed)} elapsed, ETA {format_duration(remaining)}"


def start_or_resume(out: str | Path, cfg: Any, resume: bool, may_change: tuple[str, ...], state_file: str = "last.pt", what: str = "run"):
    """Guard a run folder: refuse to overwrite a run, or load the state a ``--resume`` continues from.

    Returns ``(cfg, checkpoint or None)``. On resume the run's saved config wins, except the fields in
    ``may_change`` (paths, epochs, devices), which come from ``cfg``.
    """
    import dataclasses

    from terralite.checkpoint import load_checkpoint
    from terralite.config import from_dict
    from terralite.errors import TerraLiteError

    state = Path(out) / state_file
    if not resume:
        if state.exists():
            raise TerraLiteError(f"{out} already holds a {what} ({state_file}); pass --resume to continue it or choose another --out")
        return cfg, None
    if not state.is_file():
        raise TerraLiteError(f"nothing to resume: {state} does not exist; drop --resume to start a new {what}")
    ckpt = load_checkpoint(state)
    saved = from_dict(type(cfg), ckpt["config"])
    _refuse_changed_settings(out, cfg, saved, may_change)
    return dataclasses.replace(saved, resume=True, **{key: getattr(cfg, key) for key in may_change}), ckpt


def _refuse_changed_settings(out, cfg: Any, saved: Any, may_change: tuple[str, ...]) -> None:
    """A resumed run keeps its saved settings: a setting given now (other than its default) that differs from the
    saved one (``--batch-size``, ``--crop``...) would be silently ignored, so it is refused instead."""
    from terralite.config import to_dict
    from terralite.errors import TerraLiteError

    given, kept = to_dict(cfg), to_dict(saved)
    try:
        defaults = to_dict(type(cfg)())
    except TypeError:  # a config without defaults for every field: every difference counts
        defaults = {}
    changed = [f"{key} {kept.get(key)!r} -> {value!r}" for key, value in given.items()
               if key not in may_change and key != "resume" and value != kept.get(key) and value != defaults.get(key, object())]
    if changed:
        raise TerraLiteError(f"--resume of {out} with other settings ({'; '.join(changed)}): a resumed run keeps the settings it "
                             f"started with; only {', '.join(may_change)} may change: drop those options or start a new --out")
