"""The FasterSeg search (METHODS §2): warm-up, then first-order bilevel teacher–student co-search.

- The training split is shuffled once (seeded) and cut into two disjoint halves: weights / architecture.
- Warm-up trains weights only with the sandwich rule: the teacher at full width, the student at its max,
  min and a random width, gradients summed into one SGD step.
- Search: per step an architecture step on an architecture batch (Adam 3e-4, betas (0.5, 0.999)): teacher
  and student segmentation losses plus λ·latency for the student only; then the gradients are zeroed and a
  weight step runs on a weight batch (SGD, momentum 0.9, wd 5e-4, grad-norm clip 5): teacher at full width,
  student at Gumbel-sampled widths. Every head is supervised at 1/8 with OHEM cross-entropy.
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


class FasterSegSearch(SearchMethod):
    """One search run on the shared run loop; :func:`search` is the usual entry. Built pieces are attributes."""

    seed_per_rank = True  # each process draws its own Gumbel noise
    log_columns = ("epoch", "phase", "loss", "arch_loss", "latency_loss_ms", "latency_weight", "teacher_miou",
                   "student_miou", "teacher_ms", "student_ms", "student_fps", "teacher_branches", "student_branches")
    shown_metrics = ("phase", "loss", "student_miou", "student_ms", "student_fps", "latency_weight")

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
        self.opt_w = torch.optim.SGD(self.supernet.weight_parameters(), lr=cfg.lr_weights, momentum=cfg.momentum,
                                     weight_decay=cfg.weight_decay)
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
                                  self.cfg.lut_iters).save(used)
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
                "search": {"latency_weight": self.latency_weight, "history": self.history, "split": self.split}}

    def load_job_state(self, ckpt: dict) -> None:
        path = self.run_dir / "last.pt"
        if ckpt["spec"].get("space") != dataclasses.asdict(self.space.cfg):
            raise TerraLiteError(f"{path} holds a search over another space configuration; resume with the config it was started with")
        if ckpt["search"]["split"] != self.split:
            raise TerraLiteError(f"{path}: the training split changed since the search started (other data or seed); cannot resume")
        self.supernet.load_state_dict(ckpt["state_dict"])
        self.opt_w.load_state_dict(ckpt["optimizer"]["weights"])
        self.opt_a.load_state_dict(ckpt["optimizer"]["arch"])
        self.latency_weight = ckpt["search"]["latency_weight"]
        self.history = ckpt["search"]["history"]

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

    def _warmup_step(self, images, labels) -> float:
        """Sandwich rule: teacher at full width; student at max, min and a random width."""
        self.opt_w.zero_grad(set_to_none=True)
        total = 0.0
        for role, mode in (("teacher", "max"), ("student", "max"), ("student", "min"), ("student", "random")):
            loss = self._seg_loss(images, labels, role, mode)
            loss.backward()  # one backward per forward (DDP reduces each)
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(self.supernet.weight_parameters(), self.cfg.grad_clip)
        self.opt_w.step()
        return total

    def _arch_step(self, images, labels) -> tuple[float, float]:
        self.opt_a.zero_grad(set_to_none=True)
        loss_t = self._seg_loss(images, labels, "teacher", "max")
        loss_t.backward()
        latency = self.latency.loss(self.supernet)  # the student only: the teacher has no latency term
        loss_s = self._seg_loss(images, labels, "student", "gumbel") + self.latency_weight * latency
        loss_s.backward()
        self.opt_a.step()
        self.opt_w.zero_grad(set_to_none=True)  # the weights learn from the weight half only
        return float(loss_t.detach() + loss_s.detach()), float(latency.detach())

    def _weight_step(self, images, labels) -> float:
        self.opt_w.zero_grad(set_to_none=True)
        total = 0.0
        for role, mode in (("teacher", "max"), ("student", "gumbel")):
            loss = self._seg_loss(images, labels, role, mode)
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(self.supernet.weight_parameters(), self.cfg.grad_clip)
        self.opt_w.step()
        return total

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
        searching = epoch >= cfg.warmup_epochs
        self.supernet.train()
        self.weight_loader.sampler.set_epoch(epoch)
        self.arch_loader.sampler.set_epoch(epoch)
        arch_batches = iter(self.arch_loader)
        sums = {"loss": 0.0, "arch_loss": 0.0, "latency_loss": 0.0}
        total = min(len(self.weight_loader), cfg.steps_per_epoch) if cfg.steps_per_epoch else len(self.weight_loader)
        bar = self.progress(total, 0, epoch)
        steps = 0
        for batch in self.weight_loader:
            if steps >= total:
                break
            if searching:
                try:
                    arch_batch = next(arch_batches)
                except StopIteration:
                    arch_batches = iter(self.arch_loader)
                    arch_batch = next(arch_batches)
                arch_loss, lat = self._arch_step(*self._batch(arch_batch))
                sums["arch_loss"] += arch_loss
                sums["latency_loss"] += lat
                sums["loss"] += self._weight_step(*self._batch(batch))
            else:
                sums["loss"] += self._warmup_step(*self._batch(batch))
            steps += 1
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        if steps == 0:
            raise TerraLiteError("an epoch had no batch: the weight half of the training split is smaller than one batch")
        return {"phase": "search" if searching else "warmup", "loss": sums["loss"] / steps,
                "arch_loss": sums["arch_loss"] / steps, "latency_loss_ms": sums["latency_loss"] / steps}

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
