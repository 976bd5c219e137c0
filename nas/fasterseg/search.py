"""The FasterSeg search (METHODS §2): warm-up, then first-order bilevel teacher–student co-search.

- The training split is shuffled once (seeded) and cut into two disjoint halves: weights / architecture.
- Warm-up trains weights only with the sandwich rule: the student at its max, min and two random widths
  (no Gumbel pass), gradients summed into one SGD step. The supernet varies widths in the student role only;
  the original runs its warm-up with its first architecture set, i.e. the teacher's full-width stem and heads
  around the same shared cells, so here the student's stem and heads are the ones warmed up and the
  teacher's start training with the search phase.
- Search: per step an architecture step on an architecture batch (Adam 3e-4, betas (0.5, 0.999)), then the
  gradients are zeroed and a weight step runs on a weight batch (SGD, momentum 0.9, wd 5e-4, grad-norm clip
  5). Both steps use the same sandwich-style loss, as the original ``_loss(pretrain=False)``: teacher (full
  width) + student (Gumbel-sampled widths) + student at max width + student at min width, plus λ·latency of
  the student in the architecture step (the teacher has no latency term). Every head is supervised at 1/8
  with OHEM cross-entropy; each term is checked for NaN/inf before anything steps
  (:meth:`~terralite.engine.run.RunJob.check_finite`) and logged on its own (``log.csv``: ``loss_<term>``
  for the weight step, ``arch_loss_<term>`` for the architecture step, per-step means).
- Weight lr: ``lr_weights_warmup`` (0.02) in the warm-up and ``lr_weights`` (0.01) in the search, each
  decayed per epoch by ``torch.optim.lr_scheduler.ExponentialLR`` (0.978; the original runs the two phases as
  two jobs, so the decay restarts at the search phase's base lr, and the SGD momentum restarts too); the lr
  each epoch trained with is the ``lr`` column of the log, and the scheduler is checkpointed. The
  architecture lr is constant.
- After every epoch both roles are derived (for each candidate branch set; the student's set chosen by
  mIoU × (latency/target)^-0.07, the teacher's by mIoU), their end-to-end latency read from the table and
  their supernet mIoU measured on the validation split; λ is halved when the student is faster than the
  target band and doubled when slower. Architectures, the log and the plot are written every epoch; the
  search state is checkpointed atomically (``last.pt``), so ``resume`` continues from the last finished epoch.

The search is a user of the shared run loop (:mod:`terralite.engine.run`): device, DDP, AMP, seeding, run
folder, resume, checkpoints, log and progress are the loop's; the steps, derivation and λ control are here.
``batch_size`` is global (split across ``torchrun`` processes), as for training.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Subset

from terralite.nas.fasterseg.config import FasterSegSearchConfig
from terralite.nas.fasterseg.latency import SupernetLatency, arch_latency, measure_table, table_conditions
from terralite.nas.fasterseg.plots import arch_summary, plot_arch_evolution
from terralite.nas.latency_table import LatencyTable
from terralite.search_spaces.fasterseg.arch import arch_spec, dumps_spec
from terralite.search_spaces.fasterseg.config import preset_config
from terralite.search_spaces.fasterseg.space import FasterSegSearchSpace
from terralite.search_spaces.fasterseg.supernet import ROLES, branch_key
from terralite.atomic import write_text_atomic
from terralite.engine.distributed import barrier
from terralite.nas.base import SearchMethod
from terralite.errors import TerraLiteError

LATENCY_EXPONENT = -0.07  # branch-set choice: mIoU × (latency / target)^-0.07

# The forward passes whose OHEM losses are summed into one step: (term name, role, width mode).
WARMUP_PASSES = (("max", "student", "max"), ("min", "student", "min"),
                 ("random1", "student", "random"), ("random2", "student", "random"))
SEARCH_PASSES = (("teacher", "teacher", "max"), ("gumbel", "student", "gumbel"),
                 ("max", "student", "max"), ("min", "student", "min"))
TERM_NAMES = ("teacher", "gumbel", "max", "min", "random1", "random2")
TERM_LABELS = {"teacher": "teacher (full width)", "gumbel": "student at Gumbel-sampled widths",
               "max": "student at max width", "min": "student at min width",
               "random1": "student at random widths (1st)", "random2": "student at random widths (2nd)"}


class FasterSegSearch(SearchMethod):
    """One search run on the shared run loop; :func:`search` is the usual entry. Built pieces are attributes."""

    seed_per_rank = True  # each process draws its own Gumbel noise
    log_columns = ("epoch", "phase", "lr", "loss", *(f"loss_{t}" for t in TERM_NAMES), "arch_loss",
                   *(f"arch_loss_{t}" for t in TERM_NAMES[:4]), "latency_loss_ms", "latency_weight", "teacher_miou",
                   "student_miou", "teacher_ms", "student_ms", "student_fps", "teacher_branches", "student_branches")
    shown_metrics = ("phase", "lr", "loss", "student_miou", "student_ms", "student_fps", "latency_weight")

    def check_config(self, cfg: FasterSegSearchConfig) -> None:
        cfg.validate()

    def total_epochs(self) -> int:
        return self.cfg.warmup_epochs + self.cfg.epochs

    def build(self) -> None:
        from terralite.data.transforms import train_transform
        from terralite.losses import build_loss
        from terralite.metrics import ConfusionMatrix

        cfg = self.cfg
        self.ConfusionMatrix = ConfusionMatrix
        self.run_dir = Path(cfg.out)
        per_rank = self.per_process_batch(minimum=2)  # BatchNorm needs two images per process

        # -- data: one shuffle of the training split, two disjoint halves --------------------------
        self.generator = torch.Generator()
        record = (self.resume_ckpt or {}).get("input")
        train, val = self.build_datasets(record, train_transform(cfg.crop, generator=self.generator), val_split=cfg.val_split)
        self.train_size = len(train)
        order = np.random.default_rng(cfg.seed).permutation(len(train))
        half = len(train) // 2
        self.split = {"weights": sorted(order[:half].tolist()), "arch": sorted(order[half:].tolist())}
        per_process = -(-half // self.dist.world_size)
        if per_process < per_rank:
            if self.dist.enabled:
                share, fix = f"{per_process} per process over {self.dist.world_size} processes", "lower batch_size or start fewer processes"
            else:
                share, fix = f"{half} tiles", "lower batch_size"
            raise TerraLiteError(f"the training split of {self.data_name} has {len(train)} tiles: each half ({share}) must hold at "
                                 f"least one batch of {per_rank}; {fix}")
        self.weight_loader = self.make_loader(Subset(train, self.split["weights"]), per_rank, generator=self.generator)
        self.arch_loader = self.make_loader(Subset(train, self.split["arch"]), per_rank, seed_offset=1, generator=self.generator)
        if cfg.val_images is not None:
            val = Subset(val, list(range(min(cfg.val_images, len(val)))))
        self.val_loader = self.make_loader(val, 1, shuffle=False, drop_last=False)
        self.ignore_index = train.ignore_index  # classes and the ignore index are the dataset's

        # -- space, table, supernet, optimisers -------------------------------------------------------
        self.space = FasterSegSearchSpace(preset_config(cfg.preset, **cfg.space), train.num_bands, train.num_classes)
        self.table = self._latency_table()
        self.supernet = self.space.supernet().to(self.device)
        if self.device.type == "cuda" and cfg.channels_last:
            self.supernet = self.supernet.to(memory_format=torch.channels_last)
        self.raw_model = self.supernet
        self.latency = SupernetLatency(self.space, self.table, cfg.target.size).to(self.device)
        # the teacher's forward leaves the student's stem and heads unused, and vice versa
        self.model = self.wrap_ddp(self.supernet, find_unused_parameters=True)
        self.opt_w = torch.optim.SGD(self.supernet.weight_parameters(), lr=cfg.lr_weights_warmup, momentum=cfg.momentum,
                                     weight_decay=cfg.weight_decay)
        self._start_schedule(self._phase(0))
        self.opt_a = torch.optim.Adam(self.supernet.arch_parameters(), lr=cfg.lr_arch, betas=tuple(cfg.arch_betas),
                                      weight_decay=cfg.arch_weight_decay)
        self.criterion = build_loss({"ohem": {"weight": 1.0, "thresh": cfg.ohem_thresh}}, self.ignore_index)
        self.latency_weight = cfg.latency_weight
        self.history = []

    def describe(self) -> str:
        t = self.cfg.target
        return (f"fasterseg search on {self.data_name} ({self.train_size} tiles, two halves) on {self.device} "
                f"x{self.dist.world_size}, amp={self.amp}, target {t.fps:g} FPS ({t.runtime}/{t.device}@{t.size})")

    # -- latency table -------------------------------------------------------------------------------
    def _latency_table(self) -> LatencyTable:
        t = self.cfg.target
        expected = table_conditions(self.space, t.size, torch.device(t.device), t.runtime, t.precision)
        used = self.run_dir / "lut.json"
        if self.cfg.lut:
            table = LatencyTable.load(self.cfg.lut)
            table.check_conditions(expected)
            if self.dist.is_main and Path(self.cfg.lut).resolve() != used.resolve():
                used.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.cfg.lut, used)
            return table
        if not used.is_file():  # else measured by an earlier start of this run
            # one process measures (concurrent timings would disturb each other), the others read its file
            if self.dist.is_main:
                self.note(f"measuring a latency table for {t.runtime} on {t.device} at {t.size}x{t.size} (no --lut given)")
                used.parent.mkdir(parents=True, exist_ok=True)
                # timing builds and feeds random operators: keep that off the search's random streams, so
                # a search gives the same result whether its table was measured here or passed with --lut
                with torch.random.fork_rng(devices=[]):
                    measure_table(self.space, t.size, torch.device(t.device), t.runtime, self.cfg.lut_warmup,
                                  self.cfg.lut_iters, rounds=self.cfg.lut_rounds).save(used)
            barrier()
        table = LatencyTable.load(used)
        table.check_conditions(expected)
        return table

    # -- state ---------------------------------------------------------------------------------------
    def checkpoint_spec(self) -> dict:
        return {"kind": "fasterseg-supernet", "space": dataclasses.asdict(self.space.cfg),
                "in_channels": self.space.in_channels, "num_classes": self.space.num_classes}

    def job_state(self) -> dict:
        return {"optimizer": {"weights": self.opt_w.state_dict(), "arch": self.opt_a.state_dict()},
                "scheduler": {"phase": self.schedule_phase, "state": self.scheduler.state_dict()},
                "search": {"latency_weight": self.latency_weight, "history": self.history, "split": self.split}}

    def load_job_state(self, ckpt: dict) -> None:
        path = self.run_dir / "last.pt"
        if ckpt["spec"].get("space") != dataclasses.asdict(self.space.cfg):
            raise TerraLiteError(f"{path} holds a search over another space configuration; resume with the config it was started with")
        if ckpt["search"]["split"] != self.split:
            raise TerraLiteError(f"{path}: the training split changed since the search started (other data or seed); cannot resume")
        if "scheduler" not in ckpt:
            raise TerraLiteError(f"{path} was written by a search without the per-phase lr schedule and the sandwich search loss "
                                 "(TerraLite 0.2.0); it cannot be continued by this version — its architectures (*.json) stay "
                                 "usable; start a new search in another --out")
        self.supernet.load_state_dict(ckpt["state_dict"])
        self._start_schedule(ckpt["scheduler"]["phase"])
        self.opt_w.load_state_dict(ckpt["optimizer"]["weights"])  # restores the lr the schedule had reached
        self.opt_a.load_state_dict(ckpt["optimizer"]["arch"])
        self.scheduler.load_state_dict(ckpt["scheduler"]["state"])
        self.latency_weight = ckpt["search"]["latency_weight"]
        self.history = ckpt["search"]["history"]

    # -- schedule ------------------------------------------------------------------------------------
    def _phase(self, epoch: int) -> str:
        return "search" if epoch >= self.cfg.warmup_epochs else "warmup"

    def _start_schedule(self, phase: str) -> None:
        """The weight lr of ``phase``: its base lr, ×gamma per epoch (ExponentialLR, stepped after each epoch).

        The original warms up and searches in two separate jobs, each with its own ExponentialLR: the decay
        restarts at the search phase's base lr.
        """
        cfg = self.cfg
        lr, gamma = (cfg.lr_weights_warmup, cfg.lr_decay_warmup) if phase == "warmup" else (cfg.lr_weights, cfg.lr_decay)
        for group in self.opt_w.param_groups:
            group["lr"] = group["initial_lr"] = lr
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.opt_w, gamma)
        self.schedule_phase = phase

    # -- steps ---------------------------------------------------------------------------------------
    def _batch(self, batch):
        images, labels = batch
        images = images.to(self.device, non_blocking=True)
        if self.device.type == "cuda" and self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels.to(self.device, non_blocking=True)

    def _seg_loss(self, images, labels, role: str, width_mode: str) -> torch.Tensor:
        with self.autocast():
            preds = self.model(images, role=role, width_mode=width_mode)
        size = next(iter(preds.values())).shape[-2:]
        # supervision at 1/8: nearest subsampling keeps the ignore index intact
        target = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
        return sum(self.criterion(p.float(), target) for p in preds.values())

    def _sandwich(self, images, labels, passes, where: tuple[int, int, str]) -> dict[str, float]:
        """Back-propagate the OHEM loss of each pass of ``passes`` (one backward per forward: DDP reduces each,
        and one pass's graph is freed before the next); returns each term's value. ``where``: (epoch, step,
        which step) for the message of a non-finite term."""
        epoch, step, kind = where
        terms = {}
        for name, role, mode in passes:
            loss = self._seg_loss(images, labels, role, mode)
            terms[name] = self.check_finite(loss, epoch, step, f"{kind} {TERM_LABELS[name]}")
            loss.backward()
        return terms

    def _warmup_step(self, images, labels, epoch: int = 0, step: int = 0) -> dict[str, float]:
        """Weights only: the student at max, min and two random widths, summed into one SGD step."""
        self.opt_w.zero_grad(set_to_none=True)
        terms = self._sandwich(images, labels, WARMUP_PASSES, (epoch, step, "warm-up step,"))
        torch.nn.utils.clip_grad_norm_(self.supernet.weight_parameters(), self.cfg.grad_clip)
        self.opt_w.step()
        return terms

    def _arch_step(self, images, labels, epoch: int = 0, step: int = 0) -> tuple[dict[str, float], float]:
        """α, β and the width logits of both roles from the search-phase sandwich loss + λ·latency (student)."""
        self.opt_a.zero_grad(set_to_none=True)
        terms = self._sandwich(images, labels, SEARCH_PASSES, (epoch, step, "architecture step,"))
        latency = self.latency.loss(self.supernet)  # the student only: the teacher has no latency term
        latency_ms = self.check_finite(latency, epoch, step, "architecture step, latency")
        (self.latency_weight * latency).backward()
        self.opt_a.step()
        self.opt_w.zero_grad(set_to_none=True)  # the weights learn from the weight half only
        return terms, latency_ms

    def _weight_step(self, images, labels, epoch: int = 0, step: int = 0) -> dict[str, float]:
        """The weights from the same sandwich loss, on a weight batch."""
        self.opt_w.zero_grad(set_to_none=True)
        terms = self._sandwich(images, labels, SEARCH_PASSES, (epoch, step, "weight step,"))
        torch.nn.utils.clip_grad_norm_(self.supernet.weight_parameters(), self.cfg.grad_clip)
        self.opt_w.step()
        return terms

    # -- evaluation and derivation ---------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, dict[str, float]]:
        """Supernet mIoU of each role's branch-set heads on the validation split: ``{role: {set: miou}}``."""
        self.supernet.eval()
        keys = [branch_key(bs) for bs in self.space.cfg.branch_sets]
        result = {}
        for role in ROLES:
            matrices = {k: self.ConfusionMatrix(self.space.num_classes, self.ignore_index, self.device) for k in keys}
            for batch in self.val_loader:
                images, labels = self._batch(batch)
                with self.autocast():
                    preds = self.supernet(images, role=role, width_mode="max" if role == "teacher" else "argmax")
                for k in keys:
                    logits = F.interpolate(preds[k].float(), size=labels.shape[-2:], mode="bilinear", align_corners=True)
                    matrices[k].update(logits.argmax(1), labels)
            for m in matrices.values():
                m.all_reduce()
            result[role] = {k: m.compute()["miou"] for k, m in matrices.items()}
        self.supernet.train()
        return result

    def derive(self, miou: dict[str, dict[str, float]]) -> dict[str, dict]:
        """Each role's architecture, branch set and predicted latency at the target size."""
        t = self.cfg.target
        target_ms = 1000.0 / t.fps
        derived = {}
        for role in ROLES:
            best = None
            for bs in self.space.cfg.branch_sets:
                arch = self.space.derive(self.supernet, role, bs)
                ms = arch_latency(self.table, arch, t.size, self.space.in_channels, self.space.num_classes)["total"]
                m = miou[role][branch_key(bs)]
                score = m * (ms / target_ms) ** LATENCY_EXPONENT if role == "student" else m
                if best is None or score > best["score"]:
                    best = {"arch": arch, "branch_set": branch_key(bs), "latency_ms": ms, "miou": m, "score": score}
            derived[role] = best
        return derived

    def _write_arch(self, role: str, item: dict, epoch: int) -> None:
        t = self.cfg.target
        label = f"fasterseg-{role} ({self.run_dir.name}, epoch {epoch + 1}, target {t.fps:g} FPS {t.runtime}/{t.device}@{t.size})"
        text = dumps_spec(arch_spec(item["arch"], self.space.in_channels, self.space.num_classes, label))
        (self.run_dir / "arch").mkdir(exist_ok=True)
        write_text_atomic(self.run_dir / "arch" / f"epoch_{epoch + 1:03d}_{role}.json", text)
        write_text_atomic(self.run_dir / f"{role}.json", text)

    # -- the loop --------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int, first_batch: int) -> dict:
        cfg = self.cfg
        phase = self._phase(epoch)
        if phase != self.schedule_phase:  # the first search epoch: the search phase's own schedule and, as the
            self.opt_w.state.clear()  # original's search job builds a new SGD, no momentum carried from the warm-up
            self._start_schedule(phase)
        lr = self.opt_w.param_groups[0]["lr"]
        self.supernet.train()
        self.weight_loader.sampler.set_epoch(epoch)
        self.arch_loader.sampler.set_epoch(epoch)
        arch_batches = iter(self.arch_loader)
        sums = {"latency_loss_ms": 0.0}
        total = min(len(self.weight_loader), cfg.steps_per_epoch) if cfg.steps_per_epoch else len(self.weight_loader)
        bar = self.progress(total, 0, epoch)
        steps = 0

        def add(prefix, terms):
            for name, value in terms.items():
                sums[prefix + name] = sums.get(prefix + name, 0.0) + value

        for batch in self.weight_loader:
            if steps >= total:
                break
            if phase == "search":
                try:
                    arch_batch = next(arch_batches)
                except StopIteration:
                    arch_batches = iter(self.arch_loader)
                    arch_batch = next(arch_batches)
                arch_terms, latency_ms = self._arch_step(*self._batch(arch_batch), epoch, steps)
                add("arch_loss_", arch_terms)
                sums["arch_loss"] = sums.get("arch_loss", 0.0) + sum(arch_terms.values()) + self.latency_weight * latency_ms
                sums["latency_loss_ms"] += latency_ms
                add("loss_", self._weight_step(*self._batch(batch), epoch, steps))
            else:
                add("loss_", self._warmup_step(*self._batch(batch), epoch, steps))
            steps += 1
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        if steps == 0:
            raise TerraLiteError("an epoch had no batch: the weight half of the training split is smaller than one batch")
        self.scheduler.step()  # after the epoch, as the original's lr_policy.step()
        means = {key: value / steps for key, value in sums.items()}
        means["loss"] = sum(v for k, v in means.items() if k.startswith("loss_"))
        return {"phase": phase, "lr": lr, "arch_loss": 0.0, **means}

    def end_epoch(self, epoch: int, metrics: dict) -> dict:
        cfg = self.cfg
        miou = self.evaluate()
        derived = self.derive(miou)
        student_fps = 1000.0 / derived["student"]["latency_ms"]
        weight_used = self.latency_weight
        if metrics["phase"] == "search":  # keep the student inside [fps, fps·(1+band)]
            if student_fps < cfg.target.fps:
                self.latency_weight *= 2.0
            elif student_fps > cfg.target.fps * (1.0 + cfg.target.band):
                self.latency_weight /= 2.0
        metrics = {**metrics, "latency_weight": weight_used,
                   "teacher_miou": derived["teacher"]["miou"], "student_miou": derived["student"]["miou"],
                   "teacher_ms": derived["teacher"]["latency_ms"], "student_ms": derived["student"]["latency_ms"],
                   "student_fps": student_fps, "teacher_branches": derived["teacher"]["branch_set"],
                   "student_branches": derived["student"]["branch_set"]}
        self.history.append({"epoch": epoch + 1, **arch_summary(self.supernet, "student"), "student_fps": student_fps})
        if self.dist.is_main:
            for role in ROLES:
                self._write_arch(role, derived[role], epoch)
            plot_arch_evolution(self.history, self.run_dir / "arch_evolution.png", target_fps=cfg.target.fps,
                                band=cfg.target.band, warmup_epochs=cfg.warmup_epochs)
        return metrics

    def finish(self) -> None:
        self.folder.info(f"search finished: {self.run_dir / 'student.json'}, {self.run_dir / 'teacher.json'}")


def search(cfg: FasterSegSearchConfig) -> Path:
    """Run (or, with ``cfg.resume``, resume) a FasterSeg search; returns the run folder."""
    return FasterSegSearch(cfg).run()
