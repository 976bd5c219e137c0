"""The one training loop: baselines, searched architectures, pruned fine-tunes and distillation.

``train(cfg)`` trains the network ``cfg.model`` names on ``cfg.data`` and writes the run folder ``cfg.out``:
``config.yaml``, ``log.csv`` (one row per epoch), ``run.log``, ``tb/`` (TensorBoard, if installed),
``last.pt`` (end of every epoch, and every ``checkpoint_every`` optimizer steps within an epoch) and
``best.pt`` (highest validation mIoU).

Exact resume: a checkpoint holds the model, optimizer, scheduler and scaler states, every RNG state, the
epoch and the number of batches done in it. Sample order and augmentations are functions of
``(seed, epoch, index)`` (see :mod:`terralite.engine.loader`), so a run killed at any point and resumed with
``resume=True`` continues with the very batches it would have seen: on the CPU its final weights equal those
of an uninterrupted run.

On resume, everything that defines the training comes from the checkpoint's config; the command may change
only ``data`` and ``out`` (moved folders), ``epochs``, ``device``, ``workers``, ``checkpoint_every`` and ``val_every``.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from terralite.config import to_dict
from terralite.data.classes import IGNORE_INDEX, NUM_CLASSES
from terralite.engine.distributed import all_reduce_sum, barrier, broadcast_buffers, init_distributed, shutdown_distributed
from terralite.engine.evaluate import autocast_context, check_band_count, evaluate, resolve_amp
from terralite.engine.loader import build_loader
from terralite.engine.optim import build_optimizer, build_scheduler, clip_gradients
from terralite.engine.presets import TrainConfig, get_preset, resolve_train_config
from terralite.engine.rng import get_rng_state, seed_everything, set_rng_state
from terralite.errors import TerraLiteError
from terralite.losses import LossTerm, build_loss
from terralite.tta import check_tta_mode

__all__ = ["TrainConfig", "get_preset", "resolve_train_config", "train", "Trainer", "split_outputs"]

# Settings a resumed run may change; everything else comes from the checkpoint's config.
RESUME_MAY_CHANGE = ("data", "out", "epochs", "device", "workers", "checkpoint_every", "val_every")


def train(cfg: TrainConfig, extra_loss_terms: Sequence[LossTerm] | None = None) -> Path:
    """Train as ``cfg`` says; returns the run folder.

    ``extra_loss_terms``: callables ``(images, logits, targets) -> scalar`` added to the task loss at every
    step (``logits`` = the main output ``(B, C, H, W)`` at input size), e.g. distillation from a teacher.
    A term may also take part in the training (see :class:`Trainer`): an ``nn.Module`` term has its
    parameters trained with the model's and its ``state_dict`` checkpointed, and a term with an
    ``attach(model)`` method is handed the built model first (e.g. to hook its layers).
    """
    return Trainer(cfg, extra_loss_terms).run()


def split_outputs(out: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A model's training output → ``(logits, [aux_logits, ...])`` (the output contract allows both forms)."""
    if isinstance(out, (tuple, list)):
        logits, aux = out[0], out[1] if len(out) > 1 else []
        return logits, list(aux) if isinstance(aux, (tuple, list)) else [aux]
    return out, []


def _at_size(logits: torch.Tensor, size: torch.Size) -> torch.Tensor:
    if logits.shape[-2:] == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class Trainer:
    """One training run; :func:`train` is the usual entry. Public for callers that want its parts.

    The extra-term protocol, in the order of setup: after the model is built (and moved to its device),
    each term with an ``attach`` method is called once as ``term.attach(model)`` with the raw model (not the
    DDP wrapper); then every term that is an ``nn.Module`` is moved to the device, and its trainable
    parameters join the optimizer's base group (the model's lr and weight decay; not the decoder's lr
    multiplier), gradient clipping and, across processes, gradient averaging. Its ``state_dict`` is saved
    in each checkpoint under ``extra_terms`` (one entry per module term, in order) and loaded back on
    resume, so a resumed run must be given the same terms. Module terms are put in train mode for each
    epoch. A term must not hold the model as a sub-module (its parameters would be trained twice).
    """

    def __init__(self, cfg: TrainConfig, extra_loss_terms: Sequence[LossTerm] | None = None):
        self.cfg = cfg
        self.extra_terms: list[Callable] = list(extra_loss_terms or [])
        self._check_config(cfg)

    @staticmethod
    def _check_config(cfg: TrainConfig) -> None:
        for key in ("model", "data", "out"):
            if not getattr(cfg, key):
                raise TerraLiteError(f"training config needs {key!r} (--{key})")
        for key in ("epochs", "batch_size", "accumulate", "val_every"):
            if getattr(cfg, key) < 1:
                raise TerraLiteError(f"{key} must be at least 1, got {getattr(cfg, key)}")
        if cfg.crop < 0 or cfg.crop % 32:
            raise TerraLiteError(f"crop must be 0 (whole tiles) or a multiple of 32, got {cfg.crop}")
        check_tta_mode(cfg.val_tta)

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        from terralite.device import resolve_device
        from terralite.models import resolve_model_reference, with_io
        from terralite.run_folder import RunFolder, start_or_resume

        cfg = self.cfg
        out = Path(cfg.out)
        cfg, self.resume_ckpt = start_or_resume(out, cfg, cfg.resume, RESUME_MAY_CHANGE, what="run")
        self.cfg = cfg

        self.dist, device = init_distributed(resolve_device(cfg.device))
        self.device = device
        self.amp = resolve_amp(cfg.amp, device)
        if cfg.batch_size % self.dist.world_size:
            raise TerraLiteError(f"batch_size {cfg.batch_size} (global) is not divisible by the {self.dist.world_size} processes")
        seed_everything(cfg.seed)
        torch.backends.cudnn.benchmark = not cfg.deterministic
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)

        # The model: from the resumed checkpoint, or the reference (baseline name, spec JSON, checkpoint).
        init_ckpt = None
        if self.resume_ckpt is not None:
            spec, input_record = self.resume_ckpt["spec"], self.resume_ckpt.get("input")
        else:
            spec, init_ckpt = resolve_model_reference(cfg.model)
            input_record = init_ckpt.get("input") if init_ckpt else None
            if init_ckpt is not None and init_ckpt["spec"].get("num_classes", NUM_CLASSES) != NUM_CLASSES:
                raise TerraLiteError(f"checkpoint {cfg.model} predicts {init_ckpt['spec'].get('num_classes')} classes; "
                                     f"the dataset has {NUM_CLASSES}")
        self._check_data()

        self.train_set, self.val_set, self.generator = self._datasets(input_record)
        self.input_record = self.train_set.input_record()
        if init_ckpt is not None or self.resume_ckpt is not None:
            check_band_count(self.train_set.num_bands, spec, f"{cfg.data} ({cfg.train_split} split)")
        self.spec = with_io(spec, self.train_set.num_bands, NUM_CLASSES)
        if cfg.label:  # the name reports and leaderboards give the trained network
            self.spec["label"] = cfg.label

        from terralite.models import build_model

        model = build_model(self.spec)
        if init_ckpt is not None:
            model.load_state_dict(init_ckpt["state_dict"])
        model.to(device)
        if cfg.channels_last and device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.raw_model = model
        if cfg.teacher:
            from terralite.distillation import LogitsDistillation, load_teacher

            teacher = load_teacher(cfg.teacher, self.spec, self.input_record, device)
            self.extra_terms.append(LogitsDistillation(teacher, cfg.kd_tau, cfg.kd_alpha, IGNORE_INDEX))
        self.term_params = self._attach_terms(model, device)
        self.optimizer = build_optimizer(model, cfg.optim, self.term_params)
        if self.dist.enabled:
            ids = [device.index] if device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.model = model
        self.criterion = build_loss(cfg.loss, IGNORE_INDEX).to(device)

        per_rank = cfg.batch_size // self.dist.world_size
        self.loader = build_loader(
            self.train_set, per_rank, shuffle=True, seed=cfg.seed, device=device, num_workers=cfg.workers,
            drop_last=len(self.train_set) >= cfg.batch_size, rank=self.dist.rank, world_size=self.dist.world_size,
            generator=self.generator)
        self.per_rank_batch = per_rank
        full_batches = len(self.loader.sampler.shard()) // per_rank if self.loader.drop_last else math.ceil(len(self.loader.sampler.shard()) / per_rank)
        if cfg.max_steps_per_epoch:
            full_batches = min(full_batches, cfg.max_steps_per_epoch * cfg.accumulate)
        if full_batches == 0:
            raise TerraLiteError(f"the {cfg.train_split} split has {len(self.train_set)} tiles, too few for batch_size {cfg.batch_size}")
        self.batches_per_epoch = full_batches
        self.steps_per_epoch = math.ceil(full_batches / cfg.accumulate)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, self.steps_per_epoch, self.steps_per_epoch * cfg.epochs)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == "fp16")

        self.start_epoch, self.start_batch, self.best_miou = 0, 0, -1.0
        self._reset_loss(0.0, 0)
        if self.resume_ckpt is not None:
            self._restore(self.resume_ckpt)
        self.run = RunFolder(out, enabled=self.dist.is_main)
        self.run.save_config(cfg)
        if self.resume_ckpt is not None and self.dist.is_main:
            self._trim_log(out / "log.csv", self.start_epoch)

    @property
    def module_terms(self) -> list[nn.Module]:
        """The extra terms that are modules: their parameters train, their states are checkpointed."""
        return [term for term in self.extra_terms if isinstance(term, nn.Module)]

    def _attach_terms(self, model: nn.Module, device: torch.device) -> list[nn.Parameter]:
        """Hand ``model`` to terms with ``attach``; returns the trainable term parameters (each once, none of the model's)."""
        for term in self.extra_terms:
            if hasattr(term, "attach"):
                term.attach(model)
        seen = {id(p) for p in model.parameters()}
        params = []
        for term in self.module_terms:
            term.to(device)
            for p in term.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        return params

    @staticmethod
    def _trim_log(path: Path, completed_epochs: int) -> None:
        """Keep the log rows of the epochs the resumed checkpoint had completed (no duplicates after a resume)."""
        if not path.is_file():
            return
        from terralite.atomic import write_text_atomic

        lines = path.read_text().splitlines(keepends=True)
        kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) <= completed_epochs]
        if len(kept) != len(lines):
            write_text_atomic(path, "".join(kept))

    def _check_data(self) -> None:
        """Refuse unsound data up front (one error listing every problem); missing files pass with skip_missing."""
        from terralite.data.check import check_dataset, format_problems, require_sound_dataset

        for split in filter(None, (self.cfg.train_split, self.cfg.val_split)):
            if not self.cfg.skip_missing:
                require_sound_dataset(self.cfg.data, split)
                continue
            problems = [p for p in check_dataset(self.cfg.data, split) if Path(p.path).exists()]
            if problems:
                raise TerraLiteError(f"split {split!r} of dataset {self.cfg.data} has problems: "
                                     + format_problems(problems).replace("\n", "; "))

    def _datasets(self, input_record: dict | None):
        from terralite.data.openearthmap import OpenEarthMapDataset
        from terralite.data.transforms import train_transform

        cfg = self.cfg
        record = dict(input_record or {})
        bands = record.get("bands", cfg.bands) if input_record else cfg.bands
        mean, std = record.get("mean"), record.get("std")
        if mean is None and self.dist.enabled:
            # Normalisation statistics take a pass over the split: rank 0 computes them, the others receive them.
            import torch.distributed as dist

            box = [None]
            if self.dist.is_main:
                probe = OpenEarthMapDataset(cfg.data, cfg.train_split, skip_missing=cfg.skip_missing, bands=bands)
                box = [probe.input_record()]
            dist.broadcast_object_list(box, src=0)
            bands, mean, std = box[0]["bands"], box[0]["mean"], box[0]["std"]
        generator = torch.Generator()
        transform = train_transform(cfg.crop or None, flip_rotate=cfg.augment, generator=generator)
        train_set = OpenEarthMapDataset(cfg.data, cfg.train_split, transform=transform, skip_missing=cfg.skip_missing,
                                        bands=bands, mean=mean, std=std)
        val_set = None
        if cfg.val_split:
            val_set = OpenEarthMapDataset(cfg.data, cfg.val_split, skip_missing=cfg.skip_missing, bands=train_set.bands,
                                          mean=train_set.mean, std=train_set.std)
        return train_set, val_set, generator

    # ------------------------------------------------------------ checkpoints
    def _restore(self, ckpt: dict) -> None:
        self.raw_model.load_state_dict(ckpt["state_dict"])
        states, terms = ckpt.get("extra_terms") or [], self.module_terms
        if len(states) != len(terms):
            raise TerraLiteError(f"{Path(self.cfg.out) / 'last.pt'} holds the state of {len(states)} parameterised extra loss "
                                 f"term(s) but this run was given {len(terms)}; resume with the terms the run was started with")
        for term, state in zip(terms, states):
            term.load_state_dict(state)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.start_epoch = int(ckpt["epoch"])
        self.start_batch = int(ckpt.get("step_in_epoch", 0))
        self.best_miou = float(ckpt.get("best_miou", -1.0))
        self._reset_loss(float(ckpt.get("loss_sum", 0.0)), int(ckpt.get("loss_count", 0)))
        if ckpt.get("rng"):
            set_rng_state(ckpt["rng"])

    def _save(self, name: str, epoch: int, step_in_epoch: int, metrics: dict | None) -> None:
        """Rank 0 writes ``name`` atomically; ``epoch`` = epochs completed when ``step_in_epoch`` is 0."""
        if not self.dist.is_main:
            return
        from terralite.checkpoint import save_checkpoint

        save_checkpoint(
            Path(self.cfg.out) / name, self.spec, self.raw_model.state_dict(),
            optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(), scaler=self.scaler.state_dict(),
            epoch=epoch, step_in_epoch=step_in_epoch, config=to_dict(self.cfg), metrics=metrics or {},
            input=self.input_record, rng=get_rng_state(), best_miou=self.best_miou,
            loss_sum=float(self.loss_sum), loss_count=self.loss_count,
            extra_terms=[term.state_dict() for term in self.module_terms],
        )

    # ------------------------------------------------------------------ steps
    def _loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with autocast_context(self.device, self.amp):
            logits, aux = split_outputs(self.model(images))
            logits = _at_size(logits, labels.shape[-2:])
            loss = self.criterion(logits, labels)
            for head in aux:
                loss = loss + self.cfg.aux_weight * self.criterion(_at_size(head, labels.shape[-2:]), labels)
            for term in self.extra_terms:
                loss = loss + term(images, logits, labels)
        return loss

    def _train_epoch(self, epoch: int, first_batch: int) -> float:
        cfg = self.cfg
        self.model.train()
        for term in self.module_terms:
            term.train()
        sampler = self.loader.sampler
        sampler.set_epoch(epoch)
        sampler.set_start(first_batch * self.per_rank_batch)
        bar = None
        if self.dist.is_main and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=self.batches_per_epoch, initial=first_batch, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
        batch_index = first_batch
        for images, labels in self.loader:
            if batch_index >= self.batches_per_epoch:
                break
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            if cfg.channels_last and self.device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            last_of_group = (batch_index + 1) % cfg.accumulate == 0 or batch_index + 1 == self.batches_per_epoch
            group_start = batch_index // cfg.accumulate * cfg.accumulate
            group = min(cfg.accumulate, self.batches_per_epoch - group_start)  # the last group may be short
            sync = self.model.no_sync() if self.dist.enabled and not last_of_group else contextlib.nullcontext()
            with sync:
                loss = self._loss(images, labels)
                self.scaler.scale(loss / group).backward()
            self.loss_sum += loss.detach().double()  # stays on the device: no sync per step
            self.loss_count += 1
            batch_index += 1
            if last_of_group:
                self.scaler.unscale_(self.optimizer)
                if self.dist.enabled and self.term_params:
                    self._average_term_gradients()
                clip_gradients([*self.raw_model.parameters(), *self.term_params], cfg.optim.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
                step = batch_index // cfg.accumulate
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and batch_index < self.batches_per_epoch:
                    self._save("last.pt", epoch, batch_index, None)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}")
        if bar is not None:
            bar.close()
        totals = all_reduce_sum(torch.stack([self.loss_sum.to(self.device), torch.tensor(float(self.loss_count), dtype=torch.float64, device=self.device)]))
        mean_loss = float(totals[0] / max(float(totals[1]), 1.0))
        self._reset_loss(0.0, 0)
        return mean_loss

    def _average_term_gradients(self) -> None:
        """DDP averages the model's gradients only; the terms' are averaged here, so every rank steps alike."""
        for p in self.term_params:
            if p.grad is None:  # every rank must join each all-reduce
                p.grad = torch.zeros_like(p)
            all_reduce_sum(p.grad).div_(self.dist.world_size)

    def _reset_loss(self, total: float, count: int) -> None:
        self.loss_sum = torch.tensor(total, dtype=torch.float64, device=self.device)
        self.loss_count = count

    def _validate(self) -> dict:
        broadcast_buffers(self.raw_model)
        return evaluate(self.raw_model, self.val_set, self.cfg.val_tta, self.device, 1, num_classes=NUM_CLASSES,
                        amp=self.amp, channels_last=self.cfg.channels_last, num_workers=self.cfg.workers)

    # -------------------------------------------------------------------- run
    def run(self) -> Path:
        from terralite.models import describe
        from terralite.run_folder import EpochTimer

        self._setup()
        cfg = self.cfg
        try:
            self.run.info(f"training {describe(self.spec)} on {cfg.data} ({len(self.train_set)} tiles, "
                          f"{self.steps_per_epoch} steps/epoch) on {self.device} x{self.dist.world_size}, amp={self.amp}"
                          + (f", resumed at epoch {self.start_epoch + 1} batch {self.start_batch}" if cfg.resume else ""))
            timer = EpochTimer(cfg.epochs, self.start_epoch)
            first_batch = self.start_batch
            for epoch in range(self.start_epoch, cfg.epochs):
                started = time.monotonic()
                lr = self.optimizer.param_groups[0]["lr"]
                train_loss = self._train_epoch(epoch, first_batch)
                first_batch = 0
                metrics: dict = {"train_loss": train_loss}
                validate = self.val_set is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs)
                improved = False
                if validate:
                    val = self._validate()
                    metrics.update({"val_miou": val["miou"], "val_iou": val["iou"], "val_pixel_accuracy": val["pixel_accuracy"]})
                    improved = val["miou"] > self.best_miou
                    if improved:
                        self.best_miou = val["miou"]
                seconds = time.monotonic() - started
                # the row goes first: a kill before the checkpoint below resumes inside this epoch, and the
                # resumed run drops rows of epochs its checkpoint had not completed (see _trim_log)
                self.run.log_row({"epoch": epoch + 1, "train_loss": train_loss,
                                  "val_miou": metrics.get("val_miou", ""), "lr": lr, "seconds": round(seconds, 3)})
                if improved:
                    self._save("best.pt", epoch + 1, 0, metrics)
                self._save("last.pt", epoch + 1, 0, metrics)
                shown = {"loss": train_loss, "lr": lr}
                if validate:
                    shown["val_miou"] = metrics["val_miou"]
                self.run.info(timer.line(epoch, shown))
                barrier()
            return Path(cfg.out)
        finally:
            self.run.close()
            if self.dist.owns_group:
                shutdown_distributed()


