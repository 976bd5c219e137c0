"""The SparseMask search: single-level joint training of weights and gates of the dense-decoder supernet.

Faithful to the official search (METHODS.md §2): the whole training split trains the weights and the gates
together (no split, no bilevel loop); loss = cross-entropy + λ · Σ_l sparsity_l (λ = 0.01, see
:mod:`.sparsity`); SGD (momentum 0.9, weight decay 4e-5, poly 0.9 decay) with the decoder weights and the
gates at 10x the encoder's learning rate; gate noise N(0, 0.1²) in the forward and a clamp to [0, 2] after
every step. After each epoch the architecture is derived (threshold 1e-3 + clean-up rules) and its
connection count, parameters and GMACs at 1024x1024 (exact fvcore-convention counts from the cost model),
the supernet's validation mIoU and the gates' polarisation are logged.

With ``budget_gmacs`` the per-stage targets are steered and the final derivation enforces the budget (see
:mod:`.budget`); the final network's GMACs are then counted by fvcore on the built network as a check (and the
derivation tightened if that count is over the budget).

Run folder: ``config.yaml``, ``log.csv``, ``run.log``, ``last.pt`` (end of every epoch; ``resume=True``
continues from it), ``gates.json`` (the gates), ``arch.json`` (a full model spec, rewritten every epoch so a
killed search leaves a usable architecture) and ``connectivity.png``. Works under ``torchrun`` (DDP).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from terralite.config import from_dict, to_dict
from terralite.errors import TerraLiteError

SUPERNET_KIND = "sparsemask-supernet"  # spec kind recorded in search checkpoints (not a buildable model kind)
RESUME_MAY_CHANGE = ("epochs", "device", "workers", "val_every")


@dataclass
class SparseMaskSearchConfig:
    """Everything one search needs; see the module docstring for the recipe."""

    data: str = ""
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
    threshold: float = 1e-3
    budget_gmacs: float | None = None  # at profile_size x profile_size; None = the official fixed targets
    profile_size: int = 1024
    train_split: str = "train"
    val_split: str | None = "val"
    val_every: int = 1
    max_steps_per_epoch: int = 0  # 0 = the whole split
    encoder_weights: str | None = None  # torchvision mobilenet_v2 ImageNet weights file (optional)
    bands: list[Any] | None = None
    skip_missing: bool = False
    device: str = "auto"
    amp: str = "auto"
    workers: int | None = None
    seed: int = 0
    resume: bool = False


PRESETS: dict[str, dict] = {
    # OpenEarthMap: 512 crops, batch 8; the official search schedule (50 epochs, SGD 0.005, decoder 10x).
    "oem": {"epochs": 50, "batch_size": 8, "crop": 512},
    # Minutes on a 2-core CPU with 64 px synthetic tiles. The official λ = 0.01 needs tens of thousands of
    # steps to polarise the gates; λ = 0.5 and a 4x learning rate polarise them within a few hundred.
    "tiny": {"epochs": 20, "batch_size": 2, "crop": 64, "workers": 0, "lr": 0.02, "sparsity_weight": 0.5, "val_every": 5},
}


def resolve_search_config(preset: str | None = None, overrides: list[str] | None = None, **flags: Any) -> SparseMaskSearchConfig:
    """Defaults ← preset ← ``key=value`` overrides ← explicit flags (None = not given)."""
    from terralite.config import merge, parse_overrides

    user = parse_overrides(overrides)
    name = preset or user.pop("preset", None) or "oem"
    if name not in PRESETS:
        raise TerraLiteError(f"unknown sparsemask search preset {name!r}; valid presets: {', '.join(PRESETS)}")
    data = merge({**copy.deepcopy(PRESETS[name]), "preset": name}, user)
    for key, value in flags.items():
        if value is not None:
            data[key] = value
    return from_dict(SparseMaskSearchConfig, data)


def search(cfg: SparseMaskSearchConfig) -> Path:
    """Run the search ``cfg`` describes; returns the run folder (holding ``arch.json``)."""
    return SparseMaskSearch(cfg).run()


def _check_config(cfg: SparseMaskSearchConfig) -> None:
    for key in ("data", "out"):
        if not getattr(cfg, key):
            raise TerraLiteError(f"search config needs {key!r} (--{key})")
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


class SparseMaskSearch:
    """One search run; :func:`search` is the usual entry."""

    def __init__(self, cfg: SparseMaskSearchConfig):
        _check_config(cfg)
        self.cfg = cfg

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        from terralite.search_spaces.sparsemask.cost import CostModel
        from terralite.search_spaces.sparsemask.supernet import SparseMaskSupernet
        from terralite.data.classes import IGNORE_INDEX, NUM_CLASSES
        from terralite.device import resolve_device
        from terralite.engine.distributed import init_distributed
        from terralite.engine.evaluate import resolve_amp
        from terralite.engine.loader import build_loader
        from terralite.engine.optim import build_scheduler
        from terralite.engine.presets import ScheduleConfig
        from terralite.engine.rng import seed_everything
        from terralite.losses import build_loss
        from terralite.run_folder import RunFolder, start_or_resume

        from terralite.nas.sparsemask.budget import TargetRatioController, base_targets

        cfg = self.cfg
        out = Path(cfg.out)
        cfg, self.resume_ckpt = start_or_resume(out, cfg, cfg.resume, RESUME_MAY_CHANGE, what="search")
        self.cfg = cfg

        self.dist, self.device = init_distributed(resolve_device(cfg.device))
        self.amp = resolve_amp(cfg.amp, self.device)
        if cfg.batch_size % self.dist.world_size or cfg.batch_size // self.dist.world_size < 2:
            raise TerraLiteError(f"batch_size {cfg.batch_size} must give at least 2 images to each of the {self.dist.world_size} "
                                 "process(es) (the supernet's BN on the globally pooled feature needs 2) and divide evenly")
        seed_everything(cfg.seed)
        self._datasets()
        self.num_classes = NUM_CLASSES
        model = SparseMaskSupernet(self.train_set.num_bands, NUM_CLASSES, cfg.encoder_weights, noise_std=cfg.gate_noise).to(self.device)
        self.raw_model = model
        self.optimizer = torch.optim.SGD([
            {"params": list(model.encoder.parameters()), "lr": cfg.lr},
            {"params": list(model.decoder_parameters()), "lr": cfg.lr * cfg.decoder_lr_mult},
            {"params": model.gate_parameters(), "lr": cfg.lr * cfg.decoder_lr_mult},
        ], lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.model = model
        self.criterion = build_loss("ce", IGNORE_INDEX).to(self.device)
        per_rank = cfg.batch_size // self.dist.world_size
        self.loader = build_loader(self.train_set, per_rank, shuffle=True, seed=cfg.seed, device=self.device,
                                   num_workers=cfg.workers, drop_last=True, rank=self.dist.rank,
                                   world_size=self.dist.world_size, generator=self.generator)
        batches = len(self.loader.sampler.shard()) // per_rank
        if cfg.max_steps_per_epoch:
            batches = min(batches, cfg.max_steps_per_epoch)
        if batches == 0:
            raise TerraLiteError(f"the {cfg.train_split} split has {len(self.train_set)} tiles, too few for batch_size {cfg.batch_size}")
        self.steps_per_epoch = batches
        self.scheduler = build_scheduler(self.optimizer, ScheduleConfig(name="poly", power=cfg.poly_power), batches, batches * cfg.epochs)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")
        self.cost = CostModel(cfg.profile_size, in_channels=self.train_set.num_bands, num_classes=NUM_CLASSES)
        self.controller = None
        self.targets = base_targets()
        if cfg.budget_gmacs is not None:
            self.controller = TargetRatioController(cfg.budget_gmacs * 1e9, self.cost)
        self.start_epoch = 0
        if self.resume_ckpt is not None:
            self._restore(self.resume_ckpt)
        if self.controller is not None:
            self.targets = self.controller.targets()
        self.run_folder = RunFolder(out, enabled=self.dist.is_main)
        self.run_folder.save_config(cfg)

    def _datasets(self) -> None:
        from terralite.data.check import require_sound_dataset
        from terralite.data.openearthmap import OpenEarthMapDataset
        from terralite.data.transforms import train_transform

        cfg = self.cfg
        record = (self.resume_ckpt or {}).get("input") or {}
        bands, mean, std = record.get("bands", cfg.bands), record.get("mean"), record.get("std")
        if not cfg.skip_missing:
            for split in filter(None, (cfg.train_split, cfg.val_split)):
                require_sound_dataset(cfg.data, split)
        if mean is None and self.dist.enabled:
            # normalisation statistics take a pass over the split: rank 0 computes them, the others receive them
            import torch.distributed as dist

            box = [None]
            if self.dist.is_main:
                box = [OpenEarthMapDataset(cfg.data, cfg.train_split, skip_missing=cfg.skip_missing, bands=bands).input_record()]
            dist.broadcast_object_list(box, src=0)
            bands, mean, std = box[0]["bands"], box[0]["mean"], box[0]["std"]
        self.generator = torch.Generator()
        transform = train_transform(cfg.crop or None, flip_rotate=cfg.augment, generator=self.generator)
        self.train_set = OpenEarthMapDataset(cfg.data, cfg.train_split, transform=transform, skip_missing=cfg.skip_missing,
                                             bands=bands, mean=mean, std=std)
        self.val_set = None
        if cfg.val_split:
            self.val_set = OpenEarthMapDataset(cfg.data, cfg.val_split, skip_missing=cfg.skip_missing, bands=self.train_set.bands,
                                               mean=self.train_set.mean, std=self.train_set.std)
        self.input_record = self.train_set.input_record()

    # ------------------------------------------------------------ checkpoints
    def _spec(self) -> dict:
        return {"kind": SUPERNET_KIND, "in_channels": self.train_set.num_bands, "num_classes": self.num_classes,
                "encoder_weights": self.cfg.encoder_weights}

    def _save(self, epoch: int, metrics: dict) -> None:
        if not self.dist.is_main:
            return
        from terralite.checkpoint import save_checkpoint
        from terralite.engine.rng import get_rng_state

        save_checkpoint(Path(self.cfg.out) / "last.pt", self._spec(), self.raw_model.state_dict(),
                        optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                        scaler=self.scaler.state_dict(), epoch=epoch, config=to_dict(self.cfg), metrics=metrics,
                        input=self.input_record, rng=get_rng_state(),
                        controller=self.controller.state_dict() if self.controller else {})

    def _restore(self, ckpt: dict) -> None:
        from terralite.engine.rng import set_rng_state

        self.raw_model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.controller is not None and ckpt.get("controller"):
            self.controller.load_state_dict(ckpt["controller"])
        self.start_epoch = int(ckpt["epoch"])
        if ckpt.get("rng"):
            set_rng_state(ckpt["rng"])

    # ------------------------------------------------------------------ steps
    def _train_epoch(self, epoch: int) -> dict:
        from terralite.engine.distributed import all_reduce_sum
        from terralite.engine.evaluate import autocast_context

        from terralite.nas.sparsemask.sparsity import sparsity_loss

        cfg = self.cfg
        self.model.train()
        self.loader.sampler.set_epoch(epoch)
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # task loss, sparsity loss, batches
        for batch_index, (images, labels) in enumerate(self.loader):
            if batch_index >= self.steps_per_epoch:
                break
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            with autocast_context(self.device, self.amp):
                logits = self.model(images)
                task = self.criterion(logits, labels)
            sparse = sparsity_loss(self.raw_model.last_gates, self.targets)  # fp32, outside autocast
            loss = task + cfg.sparsity_weight * sparse
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.raw_model.clamp_gates_()
            sums += torch.tensor([float(task.detach()), float(sparse.detach()), 1.0], dtype=torch.float64, device=self.device)
        all_reduce_sum(sums)
        return {"task_loss": float(sums[0] / sums[2]), "sparsity_loss": float(sums[1] / sums[2])}

    def _derive(self) -> tuple[dict | None, list[str], float]:
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
        return mask_to_arch(mask, encoder_weights=self.cfg.encoder_weights), dropped, plain_gmacs

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

    # -------------------------------------------------------------------- run
    def run(self) -> Path:
        from terralite.search_spaces.sparsemask.arch import arch_to_mask, num_connections
        from terralite.search_spaces.sparsemask.topology import valid_entries
        from terralite.engine.distributed import barrier, shutdown_distributed
        from terralite.run_folder import EpochTimer

        from terralite.nas.sparsemask.sparsity import gate_polarisation

        self._setup()
        cfg, log = self.cfg, self.run_folder
        try:
            log.info(f"sparsemask search on {cfg.data} ({len(self.train_set)} tiles, {self.steps_per_epoch} steps/epoch) "
                     f"on {self.device} x{self.dist.world_size}, amp={self.amp}, lambda={cfg.sparsity_weight}"
                     + (f", budget {cfg.budget_gmacs} GMACs at {cfg.profile_size}" if cfg.budget_gmacs is not None else "")
                     + (f", resumed after epoch {self.start_epoch}" if cfg.resume else ""))
            timer = EpochTimer(cfg.epochs, self.start_epoch)
            arch, metrics = None, {}
            for epoch in range(self.start_epoch, cfg.epochs):
                started = time.monotonic()
                losses = self._train_epoch(epoch)
                arch, dropped, plain_gmacs = self._derive()
                gates = self.raw_model.gate_values()
                metrics = {"epoch": epoch + 1, **losses, "gate_polarisation": gate_polarisation(gates, valid_entries()),
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
                last = epoch + 1 == cfg.epochs
                if self.val_set is not None and ((epoch + 1) % cfg.val_every == 0 or last):
                    metrics["val_miou"] = self._validate()
                self._save(epoch + 1, {k: v for k, v in metrics.items() if k != "dropped_for_budget"})
                if self.dist.is_main:
                    if arch is not None:
                        self._write_arch(arch, metrics, final=False)
                    log.log_row({k: metrics.get(k, "") for k in ("epoch", "task_loss", "sparsity_loss", "val_miou", "connections",
                                                                  "params_m", "gmacs", "gate_polarisation", "mean_gate", "unbudgeted_gmacs", "rho")}
                                | {"seconds": round(time.monotonic() - started, 3)})
                    shown = {k: metrics[k] for k in ("task_loss", "sparsity_loss", "val_miou", "connections", "params_m",
                                                     "gmacs", "gate_polarisation") if k in metrics}
                    log.info(timer.line(epoch, shown))
                barrier()
            if arch is None:
                arch, _, _ = self._derive()
                if arch is None:
                    raise TerraLiteError("no connection of the output stage survived the search (it collapsed); "
                                         "lower --lambda or train longer")
            self._finish(arch, metrics)
            return Path(cfg.out)
        finally:
            log.close()
            if self.dist.enabled:
                shutdown_distributed()

    def _finish(self, arch: dict, metrics: dict) -> None:
        """Count the final network with fvcore, re-tighten if a budget is exceeded, write arch.json + picture."""
        from terralite.search_spaces.sparsemask.arch import mask_to_arch, num_connections

        from terralite.nas.sparsemask.budget import derive_within_budget

        if not self.dist.is_main:
            return
        cfg = self.cfg
        measured = self._measure(arch)
        if cfg.budget_gmacs is not None and measured["gmacs"] > cfg.budget_gmacs:
            # the profiler counts more than the cost model: tighten by the difference and derive again
            excess = (measured["gmacs"] - self.cost.arch_gmacs(arch)) * 1e9
            mask, dropped = derive_within_budget(self.raw_model.gate_values(), self.cost, cfg.budget_gmacs * 1e9 - excess, cfg.threshold)
            arch = mask_to_arch(mask, encoder_weights=cfg.encoder_weights)
            metrics["dropped_for_budget"] = dropped
            measured = self._measure(arch)
        metrics = {**metrics, "connections": num_connections(arch), "params_m": measured["params_m"],
                   "gmacs": measured["gmacs"], "gmacs_counter": measured["counter"]}
        self._write_arch(arch, metrics, final=True)
        self.run_folder.info(f"derived architecture: {metrics['connections']} connections, {measured['params_m']:.3f} M params, "
                             f"{measured['gmacs']:.3f} GMACs at {cfg.profile_size}x{cfg.profile_size} ({measured['counter']}); "
                             f"gate polarisation {metrics['gate_polarisation']:.3f} → {Path(cfg.out) / 'arch.json'}")
