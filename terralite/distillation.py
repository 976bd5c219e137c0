"""Logits knowledge distillation: a KL term from a frozen teacher, added to the student's task loss.

Used by ``terralite train --teacher CKPT`` (FasterSeg's teacher → student retraining) and by ``compress``.
The term is ``alpha · tau² · KL(softmax(teacher/tau) ‖ softmax(student/tau))`` per pixel, averaged over the
pixels that are not ignored; ``tau²`` keeps gradient magnitudes comparable across temperatures (Hinton et al.).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from terralite.errors import TerraLiteError

IGNORE_INDEX = 255


def kd_kl_loss(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None, tau: float = 1.0,
               ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """``tau² · KL(teacher ‖ student)`` of ``(B, C, H, W)`` logits, averaged over non-ignored pixels."""
    if teacher.shape[-2:] != student.shape[-2:]:
        teacher = F.interpolate(teacher, size=student.shape[-2:], mode="bilinear", align_corners=False)
    log_s = F.log_softmax(student.float() / tau, dim=1)
    log_t = F.log_softmax(teacher.float() / tau, dim=1)
    kl = F.kl_div(log_s, log_t, log_target=True, reduction="none").sum(dim=1)  # (B, H, W)
    if target is not None:
        valid = target != ignore_index
        if not valid.any():
            return student.sum() * 0.0
        kl = kl[valid]
    return kl.mean() * tau**2


class LogitsDistillation:
    """An extra loss term ``(images, student_logits, targets) -> scalar`` for :func:`terralite.engine.train.train`."""

    def __init__(self, teacher: nn.Module, tau: float = 1.0, alpha: float = 1.0, ignore_index: int = IGNORE_INDEX):
        if tau <= 0:
            raise TerraLiteError(f"distillation temperature must be positive, got kd_tau={tau}")
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.tau = tau
        self.alpha = alpha
        self.ignore_index = ignore_index

    def __call__(self, images: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = self.teacher(images)
        if isinstance(teacher_logits, (tuple, list)):
            teacher_logits = teacher_logits[0]
        return self.alpha * kd_kl_loss(outputs, teacher_logits, targets, self.tau, self.ignore_index)


def load_teacher(ref: str, student_spec: dict, student_input: dict | None, device: torch.device) -> nn.Module:
    """Load a teacher checkpoint and check it sees the same bands, normalisation and classes as the student."""
    from terralite.models import load_model

    model, spec, ckpt = load_model(ref)
    if ckpt is None:
        raise TerraLiteError(f"teacher {ref!r} must be a trained TerraLite checkpoint (.pt), not an untrained spec")
    for key in ("in_channels", "num_classes"):
        if spec.get(key) != student_spec.get(key):
            raise TerraLiteError(f"teacher {ref} has {key}={spec.get(key)} but the student has {student_spec.get(key)}")
    teacher_input = ckpt.get("input")
    if teacher_input and student_input and (teacher_input.get("bands") != student_input.get("bands")
                                            or not _close(teacher_input.get("mean"), student_input.get("mean"))
                                            or not _close(teacher_input.get("std"), student_input.get("std"))):
        raise TerraLiteError(f"teacher {ref} was trained with other input bands or normalisation ({teacher_input}) than the student "
                             f"({student_input}); distil from a teacher trained on the same data")
    return model.to(device)


def _close(a, b) -> bool:
    if a is None or b is None:
        return a == b
    return len(a) == len(b) and all(abs(x - y) <= 1e-6 * max(1.0, abs(x)) for x, y in zip(a, b))
