"""Segmentation metrics accumulated over a whole split through one confusion matrix.

mIoU is the mean over classes of IoU computed from the confusion matrix of *all* pixels of the split
(the OpenEarthMap protocol), not an average of per-image scores. Pixels whose target is the ignore index
never count. Classes that appear neither in the targets nor in the predictions have no IoU (NaN) and are
left out of the means.
"""

from __future__ import annotations

import math

import torch


class ConfusionMatrix:
    """A ``(num_classes, num_classes)`` int64 matrix, rows = target class, columns = predicted class."""

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str = "cpu"):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch. ``pred`` is a class map shaped like ``target`` or logits ``(B, C, H, W)`` (argmax taken)."""
        if pred.dim() == target.dim() + 1:
            pred = pred.argmax(dim=1)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)}")
        pred = pred.reshape(-1).to(self.matrix.device, torch.int64)
        target = target.reshape(-1).to(self.matrix.device, torch.int64)
        valid = target != self.ignore_index
        if not bool(((target[valid] >= 0) & (target[valid] < self.num_classes)).all()):
            raise ValueError(f"target holds values outside 0..{self.num_classes - 1} and the ignore index {self.ignore_index}")
        index = target[valid] * self.num_classes + pred[valid]
        self.matrix += torch.bincount(index, minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        self.matrix += other.matrix.to(self.matrix.device)
        return self

    def all_reduce(self) -> None:
        """Sum the matrix over all ranks of an initialised process group (no-op for a single process)."""
        from terralite.engine.distributed import all_reduce_sum

        all_reduce_sum(self.matrix)

    def reset(self) -> None:
        self.matrix.zero_()

    def compute(self) -> dict:
        """``{"miou", "iou": [...], "f1": [...], "mf1", "precision", "recall", "pixel_accuracy", "pixels"}``.

        Per-class entries are floats; NaN marks a class absent from both targets and predictions.
        """
        m = self.matrix.double().cpu()
        tp = m.diag()
        gt = m.sum(dim=1)  # pixels of each class in the targets
        pr = m.sum(dim=0)  # pixels predicted as each class
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        union = gt + pr - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), nan)
        f1 = torch.where(gt + pr > 0, 2 * tp / (gt + pr).clamp(min=1), nan)
        precision = torch.where(pr > 0, tp / pr.clamp(min=1), nan)
        recall = torch.where(gt > 0, tp / gt.clamp(min=1), nan)
        total = m.sum()
        return {
            "miou": _nanmean(iou),
            "iou": iou.tolist(),
            "mf1": _nanmean(f1),
            "f1": f1.tolist(),
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
            "pixels": int(total),
        }


def _nanmean(values: torch.Tensor) -> float:
    present = values[~torch.isnan(values)]
    return float(present.mean()) if present.numel() else float("nan")


def json_safe(value):
    """Replace NaN floats (nested in dicts/lists) by None so the result is valid JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
