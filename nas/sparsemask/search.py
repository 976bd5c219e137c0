"""The SparseMask search: single-level joint training of weights and gates of the dense-decoder supernet.

Faithful to the official search (METHODS.md §2): the whole training split trains the weights and the gates
together (no split, no bilevel loop); loss = cross-entropy + λ · Σ_l sparsity_l (λ = 0.01, see
:mod:`.sparsity`); SGD (momentum 0.9, weight decay 4e-5, poly 0.9 decay) with the decoder weights and the
gates at 10x the encoder's learning rate; gate noise N(0, 0.1²) in the forward and a clamp to [0, 2] after
every step. After each epoch the architecture is derived (threshold 1e-3 + clean-up rules) and its
connection count, parameters and GMACs at 1024x1024 (exact fvcore-convention counts from the cost model),
the supernet's validation mIoU and the gates' polarisation are logged.

Every affine BatchNorm (encoder and decoder stages; the per-connection BNs have no affine part) keeps its
scale and shift fixed during the search, as in the original (``freeze_bn_affine``, default on; running
statistics still update). Measured on synthetic data, same seed, ``tiny`` preset (20 epochs of 7 steps,
λ = 0.5, lr 0.02), the rest of the recipe unchanged:

====================  ====================  ===================  =====================
freeze_bn_affine      supernet val mIoU     gate polarisation    connections derived
====================  ====================  ===================  =====================
True (default)        0.619                 0.978                2
False                 0.531                 0.978                1
====================  ====================  ===================  =====================

(polarisation: share of the 90 gates within 0.05 of 0 or 2, i.e. w/2 near 0 or 1). The gates polarise alike
either way; with frozen affine parameters the supernet scores 0.09 mIoU higher, so the default follows the
original. Commands: ``terralite data synth D --tiles 24 --size 64 --seed 0``, then
``terralite search sparsemask --preset tiny --data D --out RUN --device cpu --seed 0 --set profile_size=64
--set freeze_bn_affine=true`` (and ``=false``); the values are the last epoch's row of each ``log.csv``.

With ``budget_gmacs`` the per-stage targets are steered and the final derivation enforces the budget (see
:mod:`.budget`); the final network's GMACs are then counted by fvcore on the built network as a check (and the
derivation tightened if that count is over the budget).

Run folder: ``config.yaml``, ``log.csv``, ``run.log``, ``last.pt`` (end of every epoch; ``resume=True``
continues from it), ``gates.json`` (the gates), ``arch.json`` (a full model spec, rewritten every epoch so a
killed search leaves a usable architecture) and ``connectivity.png``. Works under ``torchrun`` (DDP). The
search is a user of the shared run loop (:mod:`terralite.engine.run`); a resumed search on the CPU ends with
the gates and weights of an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from terralite.config import migrate_job_keys
from terralite.data.registry import DataConfig
from terralite.nas.base import SearchMethod
from terralite.errors import TerraLiteError

SUPERNET_KIND = "sparsemask-supernet"  # spec kind recorded in search checkpoints (not a buildable model kind)
RESUME_MAY_CHANGE = ("data", "out", "epochs", "device", "workers", "val_every")


@dataclass
class SparseMaskSearchConfig:
    """Everything one search needs; see the module docstring for the recipe."""

    data: DataConfig = field(default_factory=DataConfig)  # the dataset (a root folder is shorthand for data.root)
    out: str = ""
    preset: str = "oem"
    epochs: int = 50
    batch_size: int = 8  # global batch (split across DDP ranks); at least 2 per rank (BN on pooled features)
    crop: int = 512  # random square training crop; 0 = whole tiles
    augment: bool = False
    lr: float = 0.005  # encoder; decoder weights and gates get lr * decoder_lr_mult
    decoder_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 4e-5
    poly_power: float = 0.9
    sparsity_weight: float = 0.01  # λ
    gate_noise: float = 0.1
    freeze_bn_affine: bool = True  # BatchNorm scale/shift fixed during the search, as the original (see the docstring)
    threshold: float = 1e-3
    budget_gmacs: float | None = None  # at profile_size x profile_size; None = the official fixed targets
    profile_size: int = 1024
    train_split: str = "train"
    val_split: str | None = "val"
    val_every: int = 1
    steps_per_epoch: int = 0  # cap on steps per epoch; 0 = the whole split
    encoder_weights: str | None = None  # torchvision mobilenet_v2 ImageNet weights file: initialises, not stored in arch.json
    device: str = "auto"
    amp: str = "auto"  # auto | fp16 | bf16 | none
    workers: int | None = None
    seed: int = 0
    resume: bool = False

    @classmethod
    def migrate(cls, data: dict) -> dict:
        return migrate_job_keys(data)


PRESETS: dict[str, dict] = {
    # OpenEarthMap: 512 crops, batch 8; the official search schedule (50 epochs, SGD 0.005, decoder 10x).
    "oem": {"epochs": 50, "batch_size": 8, "crop": 512},
    # Minutes on a 2-core CPU with 64 px synthetic tiles. The official λ = 0.01 needs tens of thousands of
    # steps to polarise the gates; λ = 0.5 and a 4x learning rate polarise them within a few hundred.
    "tiny": {"epochs": 20, "batch_size": 2, "crop": 64, "workers": 0, "lr": 0.02, "sparsity_weight": 0.5, "val_every": 5},
}


def resolve_search_config(preset: str | None = None, yaml_path: str | None = None, overrides: list[str] | None = None,
                          **flags) -> SparseMaskSearchConfig:
    """Defaults ← preset ← YAML ← ``key=value`` overrides ← explicit flags (dotted names; None = not given)."""
    from terralite.config import preset_name, resolve_config

    name = preset_name(preset, yaml_path, overrides, "oem")
    if name not in PRESETS:
        raise TerraLiteError(f"unknown sparsemask search preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return resolve_config(SparseMaskSearchConfig, yaml_path, overrides, base={**copy.deepcopy(PRESETS[name]), "preset": name},
                          fields=flags)


def search(cfg: SparseMaskSearchConfig) -> Path:
    """Run the search ``cfg`` describes; returns the run folder (holding ``arch.json``)."""
    return SparseMaskSearch(cfg).run()


def freeze_bn_affine(model: torch.nn.Module) -> int:
    """Fix the scale and shift of every affine BatchNorm of ``model``, encoder and decoder, as the original search
    does (running statistics still update); returns how many BatchNorms were frozen."""
    frozen = 0
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.affine:
            module.weight.requires_grad_(False)
            module.bias.requires_grad_(False)
            frozen += 1
    return frozen


def _check_config(cfg: SparseMaskSearchConfig) -> None:
    if not cfg.out:
        raise TerraLiteError("search config needs 'out' (--out)")
    if not (cfg.data.root or cfg.data.image):
        raise TerraLiteError("search config needs a dataset: --data ROOT, or data.root / data.image in --config")
    for key in ("epochs", "batch_size", "val_every"):
        if getattr(cfg, key) < 1:
            raise TerraLiteError(f"{key} must be at least 1, got {getattr(cfg, key)}")
    if cfg.crop < 0 or cfg.crop % 32:
        raise TerraLiteError(f"crop must be 0 (whole tiles) or a multiple of 32, got {cfg.crop}")
    if cfg.profile_size < 32 or cfg.profile_size % 32:
        raise TerraLiteError(f"profile_size must be a positive multiple of 32, got {cfg.profile_size}")
    if cfg.sparsity_weight < 0:
        raise TerraLiteError(f"lambda (sparsity_weight) must be >= 0, got {cfg.sparsity_weight}")
    if cfg.budget_gmacs is not None and cfg.budget_gmacs <= 0:
        raise TerraLiteError(f"--budget-gmacs must be positive, got {cfg.budget_gmacs}")
    if cfg.encoder_weights and not Path(cfg.encoder_weights).is_file():  # before the dataset is read, not after
        raise TerraLiteError(f"pretrained encoder weights file {cfg.encoder_weights} does not exist; --pretrained expects "
                             "torchvision mobilenet_v2 ImageNet weights (a .pth state dict); nothing is downloaded")


class SparseMaskSearch(SearchMethod):
    """One search run on the shared run loop; :func:`search` is the usual entry."""

    resume_may_change = RESUME_MAY_CHANGE
    log_columns = ("epoch", "task_loss", "sparsity_loss", "val_miou", "connections", "params_m", "gmacs",
                   "gate_polarisation", "mean_gate", "unbudgeted_gmacs", "rho")
    shown_metrics = ("task_loss", "sparsity_loss", "val_miou", "connections", "params_m", "gmacs", "gate_polarisation")

    def check_config(self, cfg: SparseMaskSearchConfig) -> None:
        _check_config(cfg)

    # ------------------------------------------------------------------ setup
    def build(self) -> None:
        from terralite.data.transforms import train_transform
        from terralite.engine.optim import build_scheduler
        from terralite.engine.presets import ScheduleConfig
        from terralite.losses import build_loss
        from terralite.nas.sparsemask.budget import TargetRatioController, base_targets
        from terralite.search_spaces.sparsemask.cost import CostModel
        from terralite.search_spaces.sparsemask.supernet import SparseMaskSupernet

        cfg = self.cfg
        # the supernet's BN on the globally pooled feature needs 2 images per process
        per_rank = self.per_process_batch(minimum=2)
        self.generator = torch.Generator()
        transform = train_transform(cfg.crop or None, flip_rotate=cfg.augment, generator=self.generator)
        record = (self.resume_ckpt or {}).get("input")
        self.train_set, self.val_set = self.build_datasets(record, transform, val_split=cfg.val_split)
        self.num_classes = self.train_set.num_classes  # classes and the ignore index are the dataset's
        model = SparseMaskSupernet(self.train_set.num_bands, self.num_classes, cfg.encoder_weights, noise_std=cfg.gate_noise).to(self.device)
        self.raw_model = model
        if cfg.freeze_bn_affine:
            freeze_bn_affine(model)
        self.optimizer = torch.optim.SGD([
            {"params": [p for p in model.encoder.parameters() if p.requires_grad], "lr": cfg.lr},
            {"params": [p for p in model.decoder_parameters() if p.requires_grad], "lr": cfg.lr * cfg.decoder_lr_mult},
            {"params": model.gate_parameters(), "lr": cfg.lr * cfg.decoder_lr_mult},
        ], lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.model = self.wrap_ddp(model)
        self.criterion = build_loss("ce", self.train_set.ignore_index).to(self.device)
        self.loader = self.make_loader(self.train_set, per_rank, generator=self.generator)
        batches = len(self.loader.sampler.shard()) // per_rank
        if cfg.steps_per_epoch:
            batches = min(batches, cfg.steps_per_epoch)
        if batches == 0:
            raise TerraLiteError(f"the {cfg.train_split} split has {len(self.train_set)} tiles, too few for batch_size {cfg.batch_size}")
        self.steps_per_epoch = batches
        self.scheduler = build_scheduler(self.optimizer, ScheduleConfig(name="poly", power=cfg.poly_power), batches, batches * cfg.epochs)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")
        self.cost = CostModel(cfg.profile_size, in_channels=self.train_set.num_bands, num_classes=self.num_classes)
        self.controller = None
        self.targets = base_targets()
        if cfg.budget_gmacs is not None:
            self.controller = TargetRatioController(cfg.budget_gmacs * 1e9, self.cost)
        self.arch, self.metrics = None, {}

    def describe(self) -> str:
        cfg = self.cfg
        return (f"sparsemask search on {self.data_name} ({len(self.train_set)} tiles, {self.steps_per_epoch} steps/epoch) "
                f"on {self.device} x{self.dist.world_size}, amp={self.amp}, lambda={cfg.sparsity_weight}"
                + (f", budget {cfg.budget_gmacs} GMACs at {cfg.profile_size}" if cfg.budget_gmacs is not None else ""))

    # ------------------------------------------------------------ checkpoints
    def checkpoint_spec(self) -> dict:
        return {"kind": SUPERNET_KIND, "in_channels": self.train_set.num_bands, "num_classes": self.num_classes}

    def job_state(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "controller": self.controller.state_dict() if self.controller else {}}

    def load_job_state(self, ckpt: dict) -> None:
        self.raw_model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.controller is not None and ckpt.get("controller"):
            self.controller.load_state_dict(ckpt["controller"])
            self.targets = self.controller.targets()

    # ------------------------------------------------------------------ steps
    def train_epoch(self, epoch: int, first_batch: int) -> dict:
        from terralite.engine.distributed import all_reduce_sum
        from terralite.nas.sparsemask.sparsity import sparsity_loss

        cfg = self.cfg
        self.model.train()
        self.loader.sampler.set_epoch(epoch)
        bar = self.progress(self.steps_per_epoch, 0, epoch)
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # task loss, sparsity loss, batches
        for batch_index, (images, labels) in enumerate(self.loader):
            if batch_index >= self.steps_per_epoch:
                break
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            with self.autocast():
                logits = self.model(images)
                task = self.criterion(logits, labels)
            sparse = sparsity_loss(self.raw_model.last_gates, self.targets)  # fp32, outside autocast
            task_value = self.check_finite(task, epoch, batch_index, "cross-entropy")
            sparse_value = self.check_finite(sparse, epoch, batch_index, "sparsity")
            loss = task + cfg.sparsity_weight * sparse
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.raw_model.clamp_gates_()
            sums += torch.tensor([task_value, sparse_value, 1.0], dtype=torch.float64, device=self.device)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        all_reduce_sum(sums)
        return {"task_loss": float(sums[0] / sums[2]), "sparsity_loss": float(sums[1] / sums[2])}

    def end_epoch(self, epoch: int, metrics: dict) -> dict:
        from terralite.nas.sparsemask.sparsity import gate_polarisation
        from terralite.search_spaces.sparsemask.arch import arch_to_mask, num_connections
        from terralite.search_spaces.sparsemask.topology import valid_entries

        cfg = self.cfg
        arch, dropped, plain_gmacs = self.derive()
        gates = self.raw_model.gate_values()
        metrics = {"epoch": epoch + 1, **metrics, "gate_polarisation": float(gate_polarisation(gates, valid_entries())),
                   "mean_gate": float(np.clip(gates[valid_entries()], 0, 2).mean() / 2)}
        if arch is None:
            metrics.update(connections=0, params_m=math.nan, gmacs=math.nan)
        else:
            mask = arch_to_mask(arch)
            metrics.update(connections=num_connections(arch), params_m=self.cost.mask_params(mask) / 1e6,
                           gmacs=self.cost.mask_macs(mask) / 1e9, dropped_for_budget=dropped)
        if self.controller is not None:
            metrics["unbudgeted_gmacs"] = plain_gmacs
            if arch is not None:
                self.controller.update(plain_gmacs * 1e9)
                self.targets = self.controller.targets()
            metrics["rho"] = self.controller.rho  # the factor the next epoch trains with
        if self.val_set is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
            metrics["val_miou"] = self._validate()
        if self.dist.is_main and arch is not None:
            self._write_arch(arch, metrics, final=False)
        self.arch, self.metrics = arch, metrics
        return metrics

    def derive(self) -> tuple[dict | None, list[str], float]:
        """``(architecture, connections dropped for the budget, GMACs of the plain derivation)``.

        The architecture has the budget enforced when there is one; it is None if the search collapsed. The
        plain derivation's cost (before enforcement) is what the target controller steers.
        """
        from terralite.search_spaces.sparsemask.arch import mask_to_arch
        from terralite.search_spaces.sparsemask.derive import derive_mask

        from terralite.nas.sparsemask.budget import derive_within_budget

        gates = self.raw_model.gate_values()
        try:
            mask, dropped = derive_mask(gates, self.cfg.threshold), []
            plain_gmacs = self.cost.mask_macs(mask) / 1e9
            if self.cfg.budget_gmacs is not None:
                mask, dropped = derive_within_budget(gates, self.cost, self.cfg.budget_gmacs * 1e9, self.cfg.threshold)
        except TerraLiteError:
            return None, [], math.nan
        return mask_to_arch(mask), dropped, plain_gmacs

    def _validate(self) -> float:
        from terralite.engine.evaluate import evaluate

        result = evaluate(self.raw_model, self.val_set, "none", self.device, 1, num_classes=self.num_classes,
                          amp=self.amp, num_workers=self.cfg.workers)
        return result["miou"]

    def _write_arch(self, arch: dict, metrics: dict, final: bool) -> None:
        from terralite.search_spaces.sparsemask.arch import make_spec, spec_to_json
        from terralite.atomic import write_text_atomic
        from terralite.metrics import json_safe

        from terralite.nas.sparsemask.plot import plot_connectivity

        out = Path(self.cfg.out)
        search_record = {
            "method": "sparsemask", "epochs_done": metrics["epoch"], "final": final, "lambda": self.cfg.sparsity_weight,
            "threshold": self.cfg.threshold, "budget_gmacs": self.cfg.budget_gmacs, "profile_size": self.cfg.profile_size,
            "connections": metrics["connections"], "params_m": metrics["params_m"], "gmacs": metrics["gmacs"],
            "gmacs_counter": metrics.get("gmacs_counter", "fvcore conventions (analytic, exact)"),
            "gate_polarisation": metrics["gate_polarisation"], "supernet_val_miou": metrics.get("val_miou"),
            "dropped_for_budget": metrics.get("dropped_for_budget", []),
        }
        spec = make_spec(arch, self.train_set.num_bands, self.num_classes, label=f"sparsemask-{out.resolve().name}",
                         search=json_safe(search_record))
        write_text_atomic(out / "arch.json", spec_to_json(spec))
        write_text_atomic(out / "gates.json", spec_to_json({"stages": {
            f"stage{s}": {"tap": g[: s + 1, 0].round(6).tolist(), "up": g[: s + 1, 1].round(6).tolist()}
            for s, g in enumerate(self.raw_model.gate_values())}}))
        if final:
            title = (f"{metrics['connections']} connections, {metrics['params_m']:.2f} M params, "
                     f"{metrics['gmacs']:.2f} GMACs at {self.cfg.profile_size}x{self.cfg.profile_size}")
            plot_connectivity(arch, out / "connectivity.png", title=title)

    def _measure(self, arch: dict) -> dict:
        """fvcore's count of the built network (one trace), as a check of the analytic cost model."""
        from terralite.search_spaces.sparsemask.cost import fvcore_macs
        from terralite.search_spaces.sparsemask.network import build

        model = build(arch, self.train_set.num_bands, self.num_classes)
        size = self.cfg.profile_size
        macs = fvcore_macs(model, torch.zeros(1, self.train_set.num_bands, size, size))
        return {"params_m": sum(p.numel() for p in model.parameters()) / 1e6, "gmacs": macs / 1e9, "counter": "fvcore"}

    def finish(self) -> None:
        """Count the final network with fvcore, re-tighten if a budget is exceeded, write arch.json + picture."""
        from terralite.nas.sparsemask.budget import derive_within_budget
        from terralite.search_spaces.sparsemask.arch import mask_to_arch, num_connections

        if not self.metrics:  # resumed after the last epoch had been saved: derive from the restored gates
            self.end_epoch(self.cfg.epochs - 1, {})
        arch, metrics = self.arch, self.metrics
        if arch is None:
            raise TerraLiteError("no connection of the output stage survived the search (it collapsed); "
                                 "lower --lambda or train longer")
        if not self.dist.is_main:
            return
        cfg = self.cfg
        measured = self._measure(arch)
        if cfg.budget_gmacs is not None and measured["gmacs"] > cfg.budget_gmacs:
            # the profiler counts more than the cost model: tighten by the difference and derive again
            excess = (measured["gmacs"] - self.cost.arch_gmacs(arch)) * 1e9
            mask, dropped = derive_within_budget(self.raw_model.gate_values(), self.cost, cfg.budget_gmacs * 1e9 - excess, cfg.threshold)
            arch = mask_to_arch(mask)
            metrics["dropped_for_budget"] = dropped
            measured = self._measure(arch)
        metrics = {**metrics, "connections": num_connections(arch), "params_m": measured["params_m"],
                   "gmacs": measured["gmacs"], "gmacs_counter": measured["counter"]}
        self._write_arch(arch, metrics, final=True)
        self.folder.info(f"derived architecture: {metrics['connections']} connections, {measured['params_m']:.3f} M params, "
                         f"{measured['gmacs']:.3f} GMACs at {cfg.profile_size}x{cfg.profile_size} ({measured['counter']}); "
                         f"gate polarisation {metrics['gate_polarisation']:.3f} → {Path(cfg.out) / 'arch.json'}")
