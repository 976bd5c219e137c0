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

The trainer is a user of the shared run loop (:mod:`terralite.engine.run`): device, DDP, AMP, seeding, the
run folder, resume, checkpoints, log and progress are the loop's; the steps, the loss and validation are here.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from terralite.engine.distributed import all_reduce_sum, broadcast_buffers
from terralite.engine.evaluate import check_band_count, evaluate
from terralite.engine.optim import build_optimizer, build_scheduler, clip_gradients
from terralite.engine.presets import TrainConfig, get_preset, resolve_train_config
from terralite.engine.run import RunJob
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


class Trainer(RunJob):
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

    what = "run"
    resume_may_change = RESUME_MAY_CHANGE
    best_metric = "val_miou"
    log_columns = ("epoch", "train_loss", "val_miou", "lr")
    shown_metrics = ("train_loss", "lr", "val_miou")

    def __init__(self, cfg: TrainConfig, extra_loss_terms: Sequence[LossTerm] | None = None):
        self.extra_terms: list[Callable] = list(extra_loss_terms or [])
        super().__init__(cfg)

    def check_config(self, cfg: TrainConfig) -> None:
        for key, flag in (("model", "--model"), ("out", "--out")):
            if not getattr(cfg, key):
                raise TerraLiteError(f"training config needs {key!r} ({flag})")
        if not (cfg.data.root or cfg.data.image):
            raise TerraLiteError("training config needs a dataset: --data ROOT, or data.root / data.image in --config")
        for key in ("epochs", "batch_size", "accumulate", "val_every"):
            if getattr(cfg, key) < 1:
                raise TerraLiteError(f"{key} must be at least 1, got {getattr(cfg, key)}")
        if cfg.crop < 0 or cfg.crop % 32:
            raise TerraLiteError(f"crop must be 0 (whole tiles) or a multiple of 32, got {cfg.crop}")
        if cfg.steps_per_epoch < 0:
            raise TerraLiteError(f"steps_per_epoch must be 0 (the whole split) or more, got {cfg.steps_per_epoch}")
        check_tta_mode(cfg.val_tta)

    # ------------------------------------------------------------------ setup
    def build(self) -> None:
        from terralite.data.transforms import train_transform
        from terralite.models import build_model, resolve_model_reference, with_io

        cfg, device = self.cfg, self.device
        per_rank = self.per_process_batch()
        # The model: from the resumed checkpoint, or the reference (baseline name, spec JSON, checkpoint).
        init_ckpt = None
        if self.resume_ckpt is not None:
            spec, input_record = self.resume_ckpt["spec"], self.resume_ckpt.get("input")
        else:
            spec, init_ckpt = resolve_model_reference(cfg.model)
            input_record = init_ckpt.get("input") if init_ckpt else None
        self.generator = torch.Generator()
        transform = train_transform(cfg.crop or None, flip_rotate=cfg.augment, generator=self.generator)
        self.train_set, self.val_set = self.build_datasets(input_record, transform, val_split=cfg.val_split)
        # classes and the ignore index are the dataset's (8 for OpenEarthMap, 5 scored for merged BOLM rasters...)
        self.num_classes, self.ignore_index = self.train_set.num_classes, self.train_set.ignore_index
        if init_ckpt is not None or self.resume_ckpt is not None:
            check_band_count(self.train_set.num_bands, spec, f"{self.data_name} ({cfg.train_split} split)")
            if spec.get("num_classes", self.num_classes) != self.num_classes:
                raise TerraLiteError(f"{cfg.model} predicts {spec.get('num_classes')} classes; the dataset {self.data_name} "
                                     f"has {self.num_classes}")
        self.spec = with_io(spec, self.train_set.num_bands, self.num_classes)
        if cfg.label:  # the name reports and leaderboards give the trained network
            self.spec["label"] = cfg.label

        if cfg.pretrained and init_ckpt is not None:
            raise TerraLiteError(f"--pretrained initialises a fresh network, but {cfg.model} is a checkpoint with its own "
                                 "weights; drop --pretrained or pass a baseline name or an architecture JSON")
        # A resumed run has its weights in last.pt: the pretrained file only initialised the first start.
        model = build_model(self.spec, pretrained=cfg.pretrained if self.resume_ckpt is None else None)
        if init_ckpt is not None:
            from terralite.models import load_weights

            load_weights(model, init_ckpt["state_dict"], f"checkpoint {cfg.model}")
        model.to(device)
        if cfg.channels_last and device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.raw_model = model
        if cfg.teacher:
            from terralite.distillation import LogitsDistillation, load_teacher

            teacher = load_teacher(cfg.teacher, self.spec, self.input_record, device)
            self.extra_terms.append(LogitsDistillation(teacher, cfg.kd_tau, cfg.kd_alpha, self.ignore_index))
        self.term_params = self._attach_terms(model, device)
        self.optimizer = build_optimizer(model, cfg.optim, self.term_params)
        self.model = self.wrap_ddp(model)
        self.criterion = build_loss(cfg.loss, self.ignore_index).to(device)

        self.loader = self.loader_for(per_rank)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, self.steps_per_epoch, self.steps_per_epoch * cfg.epochs)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == "fp16")
        self._reset_loss(0.0, 0)

    def loader_for(self, per_rank: int):
        """The training loader; sets the batches and optimizer steps of one epoch."""
        cfg = self.cfg
        loader = self.make_loader(self.train_set, per_rank, drop_last=len(self.train_set) >= cfg.batch_size, generator=self.generator)
        self.per_rank_batch = per_rank
        shard = len(loader.sampler.shard())
        full_batches = shard // per_rank if loader.drop_last else math.ceil(shard / per_rank)
        if cfg.steps_per_epoch:
            full_batches = min(full_batches, cfg.steps_per_epoch * cfg.accumulate)
        if full_batches == 0:
            raise TerraLiteError(f"the {cfg.train_split} split has {len(self.train_set)} tiles, too few for batch_size {cfg.batch_size}")
        self.batches_per_epoch = full_batches
        self.steps_per_epoch = math.ceil(full_batches / cfg.accumulate)
        return loader

    def describe(self) -> str:
        from terralite.models import describe

        return (f"training {describe(self.spec)} on {self.data_name} ({len(self.train_set)} tiles, {self.steps_per_epoch} "
                f"steps/epoch) on {self.device} x{self.dist.world_size}, amp={self.amp}")

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

    # ------------------------------------------------------------ checkpoints
    def checkpoint_spec(self) -> dict:
        return self.spec

    def job_state(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "loss_sum": float(self.loss_sum), "loss_count": self.loss_count,
                "extra_terms": [term.state_dict() for term in self.module_terms],
                "extra_term_kinds": [type(term).__name__ for term in self.extra_terms]}

    def load_job_state(self, ckpt: dict) -> None:
        self.raw_model.load_state_dict(ckpt["state_dict"])
        kinds = [type(term).__name__ for term in self.extra_terms]
        saved_kinds = ckpt.get("extra_term_kinds")
        if saved_kinds is not None and list(saved_kinds) != kinds:
            last = Path(self.cfg.out) / "last.pt"
            if "DistillationTerm" in saved_kinds:
                raise TerraLiteError(f"{last} is a `terralite distill` run (its loss has a distillation term): resume it with "
                                     "the same `terralite distill ... --resume` command, not `terralite train --resume`")
            raise TerraLiteError(f"{last} was trained with the extra loss terms {saved_kinds or 'none'} but this run was given "
                                 f"{kinds or 'none'}; resume with the terms the run was started with")
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
        self._reset_loss(float(ckpt.get("loss_sum", 0.0)), int(ckpt.get("loss_count", 0)))

    # ------------------------------------------------------------------ steps
    def _loss(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The step's loss and its parts (task, each auxiliary head, each extra term) for diagnosis."""
        parts = {}
        with self.autocast():
            logits, aux = split_outputs(self.model(images))
            logits = _at_size(logits, labels.shape[-2:])
            loss = parts["task"] = self.criterion(logits, labels)
            for k, head in enumerate(aux):
                parts[f"aux{k}"] = self.cfg.aux_weight * self.criterion(_at_size(head, labels.shape[-2:]), labels)
                loss = loss + parts[f"aux{k}"]
            for k, term in enumerate(self.extra_terms):
                parts[f"{type(term).__name__}#{k}"] = term(images, logits, labels)
                loss = loss + parts[f"{type(term).__name__}#{k}"]
        return loss, parts

    def train_epoch(self, epoch: int, first_batch: int) -> dict:
        cfg = self.cfg
        self.lr = self.optimizer.param_groups[0]["lr"]
        self.model.train()
        for term in self.module_terms:
            term.train()
        sampler = self.loader.sampler
        sampler.set_epoch(epoch)
        sampler.set_start(first_batch * self.per_rank_batch)
        bar = self.progress(self.batches_per_epoch, first_batch, epoch)
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
                loss, parts = self._loss(images, labels)
                self.check_finite(loss, epoch, batch_index // cfg.accumulate, "training", parts)  # before any backward
                self.scaler.scale(loss / group).backward()
            self.loss_sum += loss.detach().double()
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
                    self.save("last.pt", epoch, batch_index)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}")
        if bar is not None:
            bar.close()
        totals = all_reduce_sum(torch.stack([self.loss_sum.to(self.device), torch.tensor(float(self.loss_count), dtype=torch.float64, device=self.device)]))
        mean_loss = float(totals[0] / max(float(totals[1]), 1.0))
        self._reset_loss(0.0, 0)
        return {"train_loss": mean_loss, "lr": self.lr}

    def _average_term_gradients(self) -> None:
        """DDP averages the model's gradients only; the terms' are averaged here, so every rank steps alike."""
        for p in self.term_params:
            if p.grad is None:  # every rank must join each all-reduce
                p.grad = torch.zeros_like(p)
            all_reduce_sum(p.grad).div_(self.dist.world_size)

    def _reset_loss(self, total: float, count: int) -> None:
        self.loss_sum = torch.tensor(total, dtype=torch.float64, device=self.device)
        self.loss_count = count

    def end_epoch(self, epoch: int, metrics: dict) -> dict:
        cfg = self.cfg
        if self.val_set is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
            broadcast_buffers(self.raw_model)
            val = evaluate(self.raw_model, self.val_set, cfg.val_tta, self.device, 1, num_classes=self.num_classes,
                           amp=self.amp, channels_last=cfg.channels_last, num_workers=cfg.workers)
            metrics.update({"val_miou": val["miou"], "val_iou": val["iou"], "val_pixel_accuracy": val["pixel_accuracy"]})
        return metrics
