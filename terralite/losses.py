"""Segmentation losses and their weighted sums, all honouring the ignore index.

``build_loss`` reads the ``loss`` entry of a training config:

- ``"ce"`` — one loss with weight 1;
- ``{"ce": 1.0, "lovasz": 1.0}`` — a weighted sum;
- ``{"ohem": {"weight": 1.0, "thresh": 0.7}, "focal": {"weight": 0.5, "gamma": 2.0}}`` — weights with options.

Every loss maps ``(logits (B, C, H, W), target (B, H, W) int64) -> scalar``. A batch with no valid pixel
gives a zero loss that still carries a gradient path (so DDP sees every parameter used).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from terralite.errors import TerraLiteError
from terralite.registry import Registry

IGNORE_INDEX = 255

LOSSES = Registry("loss")


def _zero(logits: torch.Tensor) -> torch.Tensor:
    return logits.sum() * 0.0


@LOSSES.register("ce")
class CrossEntropyLoss(nn.Module):
    """Pixel-wise cross-entropy averaged over the valid pixels (optional class weights, label smoothing)."""

    def __init__(self, ignore_index: int = IGNORE_INDEX, class_weights: list[float] | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.register_buffer("class_weights", torch.tensor(class_weights, dtype=torch.float32) if class_weights else None, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not (target != self.ignore_index).any():
            return _zero(logits)
        return F.cross_entropy(logits.float(), target, weight=self.class_weights, ignore_index=self.ignore_index, label_smoothing=self.label_smoothing)


@LOSSES.register("ohem")
class OhemCrossEntropyLoss(nn.Module):
    """Online hard example mining CE, as FasterSeg's ``ProbOhemCrossEntropy2d`` (METHODS §2).

    ``min_kept`` is ``min_kept_ratio`` of all target pixels (FasterSeg: batch·H·W/16 at the supervised
    resolution). The valid pixels whose probability of the true class is at most ``max(thresh, p_k)`` count,
    ``p_k`` being the ``min_kept``-th smallest such probability, so at least ``min_kept`` pixels always count;
    when a batch has no more valid pixels than ``min_kept``, every valid pixel counts. The kept set is never
    empty, so the loss is never the NaN of an empty mean: a batch without any valid pixel gives 0 (with a
    graph, like every loss here), finite whenever the logits are.
    """

    def __init__(self, ignore_index: int = IGNORE_INDEX, thresh: float = 0.7, min_kept_ratio: float = 1 / 16):
        super().__init__()
        self.ignore_index = ignore_index
        self.thresh = thresh
        self.min_kept_ratio = min_kept_ratio

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        valid = target != self.ignore_index
        num_valid = int(valid.sum())
        if num_valid == 0:
            return _zero(logits)
        min_kept = max(1, int(self.min_kept_ratio * target.numel()))
        pixel_loss = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")  # (B, H, W)
        if num_valid <= min_kept:  # too few to mine: every valid pixel counts
            return pixel_loss[valid].mean()
        with torch.no_grad():
            prob_true = torch.exp(-pixel_loss[valid])  # p(true class) of each valid pixel
            threshold = max(self.thresh, torch.kthvalue(prob_true, min_kept).values.item())
            keep = torch.zeros_like(valid)
            keep[valid] = prob_true <= threshold  # holds the min_kept hardest at least
        return pixel_loss[keep].mean()


@LOSSES.register("focal")
class FocalLoss(nn.Module):
    """Focal loss ``-(1 - p_t)^gamma · log p_t`` averaged over the valid pixels."""

    def __init__(self, ignore_index: int = IGNORE_INDEX, gamma: float = 2.0):
        super().__init__()
        self.ignore_index = ignore_index
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target != self.ignore_index
        if not valid.any():
            return _zero(logits)
        log_p = F.log_softmax(logits.float(), dim=1)
        safe_target = torch.where(valid, target, torch.zeros_like(target))
        log_pt = log_p.gather(1, safe_target.unsqueeze(1)).squeeze(1)[valid]
        return (-(1 - log_pt.exp()).pow(self.gamma) * log_pt).mean()


@LOSSES.register("lovasz")
class LovaszSoftmaxLoss(nn.Module):
    """Lovász-softmax (Berman et al., CVPR 2018) over the valid pixels of the batch.

    ``classes="present"`` averages over the classes present in the target (the paper's default);
    ``"all"`` over every class.
    """

    def __init__(self, ignore_index: int = IGNORE_INDEX, classes: str = "present"):
        super().__init__()
        if classes not in ("present", "all"):
            raise TerraLiteError(f"lovasz loss: classes must be 'present' or 'all', got {classes!r}")
        self.ignore_index = ignore_index
        self.classes = classes

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1]
        probs = F.softmax(logits.float(), dim=1).permute(0, 2, 3, 1).reshape(-1, num_classes)  # (P, C)
        labels = target.reshape(-1)
        valid = labels != self.ignore_index
        if not valid.any():
            return _zero(logits)
        probs, labels = probs[valid], labels[valid]
        losses = []
        for c in range(num_classes):
            fg = (labels == c).float()
            if self.classes == "present" and fg.sum() == 0:
                continue
            errors = (fg - probs[:, c]).abs()
            errors_sorted, order = torch.sort(errors, descending=True)
            losses.append(torch.dot(errors_sorted, _lovasz_grad(fg[order])))
        return torch.stack(losses).mean()


def _lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. the sorted errors."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if gt_sorted.numel() > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


class WeightedSumLoss(nn.Module):
    """``Σ weight_i · loss_i(logits, target)``; ``last_terms`` keeps the detached parts for logging."""

    def __init__(self, terms: dict[str, tuple[float, nn.Module]]):
        super().__init__()
        self.weights = {name: weight for name, (weight, _) in terms.items()}
        self.terms = nn.ModuleDict({name: module for name, (_, module) in terms.items()})
        self.last_terms: dict[str, float] = {}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = None
        parts = {}
        for name, module in self.terms.items():
            value = module(logits, target)
            parts[name] = value.detach()
            total = self.weights[name] * value if total is None else total + self.weights[name] * value
        self.last_terms = parts
        return total


def build_loss(cfg: Any = "ce", ignore_index: int = IGNORE_INDEX) -> WeightedSumLoss:
    """Build the (weighted sum) loss a config describes; see the module docstring for the forms."""
    if isinstance(cfg, str):
        cfg = {cfg: 1.0}
    if not isinstance(cfg, dict) or not cfg:
        raise TerraLiteError(f"loss config must be a loss name or a mapping name → weight, e.g. {{ce: 1.0, lovasz: 1.0}}; got {cfg!r}")
    terms: dict[str, tuple[float, nn.Module]] = {}
    for name, value in cfg.items():
        if name not in LOSSES:
            raise TerraLiteError(f"unknown loss {name!r} in the loss config; valid names: {', '.join(LOSSES.names())}")
        options: dict = {}
        if isinstance(value, dict):
            options = dict(value)
            weight = options.pop("weight", 1.0)
        else:
            weight = value
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise TerraLiteError(f"loss {name!r}: weight must be a number, got {weight!r}")
        try:
            module = LOSSES.get(name)(ignore_index=ignore_index, **options)
        except TypeError as exc:
            raise TerraLiteError(f"loss {name!r}: bad option(s) {sorted(options)} ({exc})") from None
        terms[name] = (float(weight), module)
    return WeightedSumLoss(terms)


LossTerm = Callable[[torch.Tensor, Any, torch.Tensor], torch.Tensor]
"""An extra loss term ``(images, outputs, targets) -> scalar`` added to the task loss by the trainer."""
