"""The run loop under every long job: training, fine-tuning and both architecture searches.

A job is a subclass of :class:`RunJob` that supplies what is its own — how to build its networks and
optimisers (:meth:`RunJob.build`), one epoch of steps (:meth:`RunJob.train_epoch`), what to do after it
(:meth:`RunJob.end_epoch`: validate, derive an architecture, write artefacts), its extra checkpoint state
(:meth:`RunJob.job_state` / :meth:`RunJob.load_job_state`) and its last words (:meth:`RunJob.finish`).
Everything else is here, once:

- the run-folder guard: a folder holding a run is never overwritten; ``resume`` continues it from ``last.pt``
  with the saved config (only the fields in ``resume_may_change`` may differ);
- device, ``torchrun``/DDP (:meth:`RunJob.wrap_ddp`), AMP mode, seeding, cuDNN settings;
- data: rank 0 checks the splits and caches their statistics, the other ranks wait and read the cache
  (:meth:`RunJob.build_datasets`); loaders that resume mid-epoch (:meth:`RunJob.make_loader`);
- the run folder: ``config.yaml`` (resolved), ``log.csv`` (one row per epoch, written before the checkpoint so
  a kill in between re-runs the epoch and the resumed run drops the orphan row), ``run.log``, ``tb/``;
- atomic checkpoints with every RNG state: ``last.pt`` after every epoch (and mid-epoch on request,
  :meth:`RunJob.save`), ``best.pt`` when ``best_metric`` improves;
- progress: a bar on a terminal, one line per epoch with elapsed time and ETA;
- a guard against divergence: a job passes each loss term through :meth:`RunJob.check_finite` before it
  steps, and a NaN or infinite term stops the run with :class:`NonFiniteLossError` (job, epoch, step, term)
  before any weight sees it, so ``last.pt`` keeps the last good state.

Same names for every kind of run: ``last.pt``, ``best.pt``, ``log.csv``, ``run.log``, ``config.yaml``.
"""

from __future__ import annotations

import abc
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from terralite.errors import TerraLiteError

#: The file a run resumes from.
STATE_FILE = "last.pt"
#: State files of earlier versions that cannot be resumed by this one.
LEGACY_STATE_FILES = ("search_state.pt",)


class NonFiniteLossError(TerraLiteError):
    """A loss term became NaN or infinite: the run stopped before stepping with it."""


class RunJob(abc.ABC):
    """One long job on the shared run loop; :meth:`run` does everything.

    The config must have ``data``, ``out``, ``epochs``-like fields as the job uses them, and ``device``,
    ``amp``, ``seed``, ``workers``, ``resume``. Attributes set by the loop before :meth:`build`: ``cfg`` (on
    resume: the saved config), ``resume_ckpt``, ``dist``, ``device``, ``amp``.
    """

    what = "run"  # how messages name the job ("training run", "search")
    resume_may_change: tuple[str, ...] = ("data", "out", "device", "workers")
    seed_per_rank = False  # seed + rank: each process draws its own noise (e.g. Gumbel samples)
    best_metric: str | None = None  # metric whose improvement writes best.pt
    log_columns: tuple[str, ...] = ("epoch",)  # the columns of log.csv ("seconds" is added)
    shown_metrics: tuple[str, ...] = ()  # what the per-epoch progress line shows

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.check_config(cfg)

    # ------------------------------------------------------------------ hooks
    def check_config(self, cfg: Any) -> None:
        """Refuse a config that cannot run (before anything is created)."""

    @abc.abstractmethod
    def build(self) -> None:
        """Build data, networks and optimisers (``self.cfg``, ``self.device``, ``self.dist`` are ready)."""

    def total_epochs(self) -> int:
        return self.cfg.epochs

    def describe(self) -> str:
        """The first line of the log."""
        return f"{self.what} on {self.device} x{self.dist.world_size}, amp={self.amp}"

    @abc.abstractmethod
    def train_epoch(self, epoch: int, first_batch: int) -> dict:
        """One epoch of steps from batch ``first_batch`` (non-zero only when resuming mid-epoch); its metrics."""

    def end_epoch(self, epoch: int, metrics: dict) -> dict:
        """After the steps of ``epoch``: validate, derive, write artefacts; returns the epoch's full metrics."""
        return metrics

    @abc.abstractmethod
    def checkpoint_spec(self) -> dict:
        """The ``spec`` entry of the checkpoints (what network the state dict belongs to)."""

    def model_state(self) -> dict:
        return self.raw_model.state_dict()

    def job_state(self) -> dict:
        """Extra checkpoint entries (optimisers, schedulers, controllers...), JSON-able values and tensors."""
        return {}

    def load_job_state(self, ckpt: dict) -> None:
        """Restore what :meth:`job_state` saved and the model state (``ckpt`` is the whole checkpoint)."""
        self.raw_model.load_state_dict(ckpt["state_dict"])

    def finish(self) -> None:
        """After the last epoch (every rank calls it; write on rank 0 only)."""

    # --------------------------------------------------------------- services
    def note(self, message: str) -> None:
        """A log line; before the run folder exists (while building) it goes to stderr only."""
        if getattr(self, "folder", None) is not None:
            self.folder.info(message)
        elif self.dist.is_main:
            import sys

            print(message, file=sys.stderr)

    def check_finite(self, loss: torch.Tensor, epoch: int, step: int, term: str,
                     parts: dict[str, torch.Tensor] | None = None) -> float:
        """``loss`` as a float, or :class:`NonFiniteLossError` if it is NaN or infinite (call it before stepping).

        ``epoch`` and ``step`` are 0-based (the message counts from 1); ``term`` names the loss; ``parts``
        (name → term of a sum) are looked at only when the sum is not finite, to name the first bad one. One
        host sync per call. Under ``torchrun`` the failing process exits with the error and torchrun stops the
        others.
        """
        value = float(loss.detach())
        if math.isfinite(value):
            return value
        for name, part in (parts or {}).items():
            if not math.isfinite(float(part.detach())):
                term, value = f"{term} ({name} term)", float(part.detach())
                break
        state = Path(self.cfg.out) / STATE_FILE
        kept = f"{state} keeps the last good state" if state.is_file() else "no checkpoint had been written yet"
        message = (f"{self.what} {self.cfg.out} stopped at epoch {epoch + 1}, step {step + 1}: the {term} loss is {value} "
                   f"(not finite); no weight was updated with it and {kept}; lower the learning rate or check that "
                   "step's data")
        self.note(message)
        raise NonFiniteLossError(message)

    def wrap_ddp(self, module: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """``module`` itself for one process, else its DistributedDataParallel wrapper."""
        if not self.dist.enabled:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused_parameters)

    def build_datasets(self, input_record: dict | None, transform=None, train_split: str | None = None,
                       val_split: str | None = None):
        """``(train set, val set or None)`` of ``cfg.data``; the val set is normalised like the train set.

        ``input_record``: the normalisation and bands to use (a resumed or fine-tuned checkpoint's), or None
        for the training split's own statistics. Rank 0 checks the splits and fills the statistics cache
        first; the other ranks then read it instead of recomputing. Sets ``self.input_record`` (what the
        checkpoints record) and ``self.data_name`` (for messages).
        """
        from terralite.data.registry import build_dataset, describe_data, prepare_data
        from terralite.engine.distributed import barrier

        data = self.cfg.data
        train_split = train_split or self.cfg.train_split
        splits = [s for s in (train_split, val_split) if s]
        if self.dist.is_main:
            prepare_data(data, splits)
        barrier()
        train_set = build_dataset(data, train_split, transform=transform, input_record=input_record)
        self.input_record = train_set.input_record()
        self.class_names = [str(n) for n in getattr(train_set, "class_names", None) or []]
        self.data_name = describe_data(data)
        from terralite.data.normalize import require_finite_normalisation

        require_finite_normalisation(self.input_record, self.data_name)
        val_set = build_dataset(data, val_split, input_record=self.input_record) if val_split else None
        return train_set, val_set

    def make_loader(self, dataset, batch_size: int, *, shuffle: bool = True, seed_offset: int = 0, drop_last: bool = True,
               generator: torch.Generator | None = None):
        """A resumable loader of this rank's share; ``batch_size`` is per process."""
        from terralite.engine.loader import build_loader

        return build_loader(dataset, batch_size, shuffle=shuffle, seed=self.cfg.seed + seed_offset, device=self.device,
                            num_workers=self.cfg.workers, drop_last=drop_last, rank=self.dist.rank,
                            world_size=self.dist.world_size, generator=generator)

    def per_process_batch(self, minimum: int = 1) -> int:
        """``cfg.batch_size`` is global (split across processes): this process's share."""
        cfg, world = self.cfg, self.dist.world_size
        if cfg.batch_size % world or cfg.batch_size // world < minimum:
            raise TerraLiteError(f"batch_size {cfg.batch_size} (global) must divide evenly over the {world} process(es) and give "
                                 f"each at least {minimum} image(s); change --batch-size or start fewer processes")
        return cfg.batch_size // world

    def progress(self, total: int, initial: int, epoch: int):
        """A progress bar for one epoch on rank 0 when stderr is a terminal, else None."""
        import sys

        if not (self.dist.is_main and sys.stderr.isatty()):
            return None
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}/{self.total_epochs()}", leave=False)

    def autocast(self):
        from terralite.engine.evaluate import autocast_context

        return autocast_context(self.device, self.amp)

    def save(self, name: str, epoch: int, step_in_epoch: int = 0, metrics: dict | None = None) -> None:
        """Rank 0 writes checkpoint ``name`` atomically; ``epoch`` = epochs completed (when ``step_in_epoch`` is 0)."""
        if not self.dist.is_main:
            return
        from terralite.checkpoint import save_checkpoint
        from terralite.config import to_dict
        from terralite.engine.rng import get_rng_state

        save_checkpoint(Path(self.cfg.out) / name, self.checkpoint_spec(), self.model_state(), epoch=epoch,
                        step_in_epoch=step_in_epoch, config=to_dict(self.cfg), metrics=_python_values(metrics or {}),
                        input=self.input_record, class_names=self.class_names, rng=get_rng_state(), best=self.best,
                        **self.job_state())

    # -------------------------------------------------------------------- run
    def _start(self) -> None:
        from terralite.device import resolve_device
        from terralite.engine.distributed import init_distributed
        from terralite.engine.evaluate import resolve_amp
        from terralite.engine.rng import seed_everything
        from terralite.run_folder import RunFolder, start_or_resume

        out = Path(self.cfg.out)
        for legacy in LEGACY_STATE_FILES:
            if (out / legacy).is_file() and not (out / STATE_FILE).is_file():
                raise TerraLiteError(f"{out / legacy} was written by TerraLite 0.1 and cannot be resumed by this version; "
                                     "its architectures (*.json) stay usable — start a new run in another --out")
        self.cfg, self.resume_ckpt = start_or_resume(out, self.cfg, self.cfg.resume, self.resume_may_change, STATE_FILE, self.what)
        self.dist, self.device = init_distributed(resolve_device(self.cfg.device))
        self.amp = resolve_amp(self.cfg.amp, self.device)
        seed_everything(self.cfg.seed + (self.dist.rank if self.seed_per_rank else 0))
        deterministic = getattr(self.cfg, "deterministic", False)
        torch.backends.cudnn.benchmark = not deterministic
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.input_record: dict | None = None
        self.class_names: list[str] = []  # the training data's, stored in every checkpoint (maps and exports name them)
        self.start_epoch, self.start_batch, self.best = 0, 0, None
        self.build()
        if self.resume_ckpt is not None:
            from terralite.engine.rng import set_rng_state

            self.load_job_state(self.resume_ckpt)
            self.start_epoch = int(self.resume_ckpt["epoch"])
            self.start_batch = int(self.resume_ckpt.get("step_in_epoch", 0))
            self.best = self.resume_ckpt.get("best", self.resume_ckpt.get("best_miou"))
            if self.resume_ckpt.get("rng"):
                set_rng_state(self.resume_ckpt["rng"])
        # the folder is created only now: a job refused while building leaves nothing behind
        self.folder = RunFolder(out, enabled=self.dist.is_main)  # takes the folder's lock: one writer at a time
        if self.dist.is_main and self.resume_ckpt is None and (out / STATE_FILE).is_file():
            raise TerraLiteError(f"{out} got a {self.what} ({STATE_FILE}) from another process meanwhile; pass --resume to continue it or choose another --out")
        if self.dist.is_main:
            from terralite.atomic import remove_stale_temporaries

            for path in remove_stale_temporaries(out):  # left by a kill in the middle of a write
                self.folder.info(f"removed {path} (an unfinished write of a killed run)")
        # drop log rows of epochs the checkpoint had not completed: on resume, and on a fresh start in the folder
        # of a run that was killed before its first checkpoint (it left a config.yaml)
        if self.resume_ckpt is not None or (out / "config.yaml").is_file():
            self.folder.trim_log(self.start_epoch)
        self.folder.save_config(self.cfg)

    def run(self) -> Path:
        """Run (or resume) the job; returns the run folder."""
        from terralite.engine.distributed import barrier, shutdown_distributed
        from terralite.run_folder import EpochTimer

        try:
            self._start()
            resumed = f", resumed at epoch {self.start_epoch + 1} batch {self.start_batch}" if self.resume_ckpt else ""
            self.folder.info(self.describe() + resumed)
            timer = EpochTimer(self.total_epochs(), self.start_epoch)
            first_batch = self.start_batch
            for epoch in range(self.start_epoch, self.total_epochs()):
                started = time.monotonic()
                metrics = self.train_epoch(epoch, first_batch)
                first_batch = 0
                metrics = {"epoch": epoch + 1, **self.end_epoch(epoch, metrics)}
                improved = False
                if self.best_metric is not None and metrics.get(self.best_metric) is not None:
                    improved = self.best is None or metrics[self.best_metric] > self.best
                    if improved:
                        self.best = metrics[self.best_metric]
                row = {key: metrics.get(key, "") for key in self.log_columns}
                self.folder.log_row({**row, "seconds": round(time.monotonic() - started, 3)})
                if improved:
                    self.save("best.pt", epoch + 1, 0, metrics)
                self.save(STATE_FILE, epoch + 1, 0, metrics)
                self.folder.info(timer.line(epoch, {k: metrics[k] for k in self.shown_metrics if k in metrics}))
                barrier()
            self.finish()
            return Path(self.cfg.out)
        finally:
            if getattr(self, "folder", None) is not None:
                self.folder.close()
            if getattr(self, "dist", None) is not None and self.dist.owns_group:
                shutdown_distributed()


def _python_values(value: Any) -> Any:
    """numpy scalars (e.g. from a latency table) as Python numbers, so checkpoints load with ``weights_only``."""
    import numpy as np

    if isinstance(value, dict):
        return {k: _python_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_python_values(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value
