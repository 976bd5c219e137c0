"""Optimizers (with a faster-learning decoder group) and per-step learning-rate schedules.

Decoder parameters: a model marks them with a method ``decoder_parameters()`` returning an iterable of its
parameters; otherwise every parameter whose name starts with ``decoder.`` (smp's U-Net, FPN, ...) counts.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from terralite.engine.presets import OptimConfig, ScheduleConfig
from terralite.errors import TerraLiteError


def decoder_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters trained at ``decoder_lr_mult`` × lr (see the module docstring)."""
    if hasattr(model, "decoder_parameters"):
        return [p for p in model.decoder_parameters() if p.requires_grad]
    return [p for name, p in model.named_parameters() if name.startswith("decoder.") and p.requires_grad]


def build_optimizer(model: nn.Module, cfg: OptimConfig, extra_params: Sequence[nn.Parameter] = ()) -> torch.optim.Optimizer:
    """The optimizer of ``model``'s trainable parameters; ``extra_params`` (e.g. parameters of extra loss
    terms) are trained with the base lr group's settings."""
    params = [p for p in model.parameters() if p.requires_grad]
    params += [p for p in extra_params if p.requires_grad]
    if cfg.decoder_lr_mult != 1.0:
        decoder = decoder_parameters(model)
        if not decoder:
            raise TerraLiteError(
                f"optim.decoder_lr_mult={cfg.decoder_lr_mult} but {type(model).__name__} marks no decoder parameters "
                "(no decoder_parameters() method, no parameters named decoder.*); set optim.decoder_lr_mult=1")
        decoder_ids = {id(p) for p in decoder}
        groups = [
            {"params": [p for p in params if id(p) not in decoder_ids], "lr": cfg.lr},
            {"params": decoder, "lr": cfg.lr * cfg.decoder_lr_mult},
        ]
    else:
        groups = [{"params": params, "lr": cfg.lr}]
    name = cfg.name.lower()
    if name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    if name in ("adam", "adamw"):
        cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
        return cls(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    raise TerraLiteError(f"unknown optimizer optim.name={cfg.name!r}; valid: sgd, adam, adamw")


def lr_factor(cfg: ScheduleConfig, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based)."""
    if cfg.name == "constant":
        factor = 1.0
    elif cfg.name == "exponential":
        factor = cfg.gamma ** (step // max(steps_per_epoch, 1))
    elif cfg.name == "poly":
        factor = max(0.0, 1.0 - step / max(total_steps, 1)) ** cfg.power
    else:
        raise TerraLiteError(f"unknown schedule schedule.name={cfg.name!r}; valid: constant, exponential, poly")
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        factor *= (step + 1) / cfg.warmup_steps
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, steps_per_epoch: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimizer step (its state dict holds only numbers)."""
    lr_factor(cfg, 0, steps_per_epoch, total_steps)  # validate the name up front
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(cfg, step, steps_per_epoch, total_steps))


def clip_gradients(params: Iterable[nn.Parameter], max_norm: float) -> None:
    """Clip the joint gradient norm of ``params`` to ``max_norm`` (0: no clipping)."""
    if max_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, max_norm)


