"""Channel-wise distillation (CWD, Shu et al., ICCV 2021) on logits or feature maps, as engine loss terms.

For each channel, the activation map is turned into a distribution over spatial positions (softmax with
temperature τ) and the student's distribution is pulled towards the teacher's with KL(teacher ‖ student),
scaled by τ² and averaged over batch and channels. Pixel-wise KL on logits is the engine's own
(:mod:`terralite.distillation`); this module adds CWD and the plumbing that makes either kind of term an
``extra_loss_terms`` callable of :func:`terralite.engine.train.train`: a frozen teacher in eval mode
(optionally fp16 on CUDA), forward hooks on chosen student/teacher layers and 1x1 conv adapters where their
channel counts differ (trained with the student, not part of its spec). The term uses the engine's
extra-term protocol (:class:`terralite.engine.train.Trainer`): the engine calls :meth:`DistillationTerm.attach`
with the student it built, trains the adapters with it and checkpoints them beside it, so runs resume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from terralite.errors import TerraLiteError


def channel_wise_kl(student: torch.Tensor, teacher: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """CWD loss between ``(B, C, H, W)`` maps: τ² · mean over (B, C) of KL(softmax_HW(t/τ) ‖ softmax_HW(s/τ)).

    The student map is resized (bilinear) to the teacher's size when they differ.
    """
    if student.dim() != 4 or teacher.dim() != 4 or student.shape[:2] != teacher.shape[:2]:
        raise ValueError(f"channel-wise distillation needs two (B, C, H, W) maps with equal B and C, got {tuple(student.shape)} and {tuple(teacher.shape)}")
    if student.shape[-2:] != teacher.shape[-2:]:
        student = F.interpolate(student, size=teacher.shape[-2:], mode="bilinear", align_corners=False)
    s = student.float().flatten(2) / tau  # (B, C, HW)
    t = teacher.float().flatten(2) / tau
    t_log = F.log_softmax(t, dim=-1)
    kl = (t_log.exp() * (t_log - F.log_softmax(s, dim=-1))).sum(dim=-1)  # (B, C)
    return kl.mean() * tau**2


KD_KINDS = ("logits", "cwd", "both")


class FeatureTaps:
    """Forward hooks that keep the latest output of named sub-modules: only in forward passes that record
    gradients (training steps, not validation) unless ``always`` (a teacher runs without gradients)."""

    def __init__(self, model: nn.Module, names: list[str], always: bool = False):
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            sample = ", ".join(n for n in list(modules)[1:40] if n)
            raise TerraLiteError(f"no layer named {', '.join(missing)} in {type(model).__name__}; layer names look like: {sample}, ...")
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = [modules[n].register_forward_hook(self._hook(n, always)) for n in names]

    def _hook(self, name: str, always: bool):
        def keep(module, inputs, output):
            if always or torch.is_grad_enabled():
                self.outputs[name] = output[0] if isinstance(output, (tuple, list)) else output

        return keep

    def pop(self, name: str) -> torch.Tensor:
        if name not in self.outputs:
            raise RuntimeError(f"layer {name} produced no output in this forward pass")
        return self.outputs.pop(name)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def parse_layer_pairs(specs: list[str]) -> list[tuple[str, str]]:
    """``["student.layer:teacher.layer", "same.name"]`` → ``[(student, teacher), (same, same)]``."""
    pairs = []
    for item in specs:
        student, _, teacher = item.partition(":")
        if not student:
            raise TerraLiteError(f"--feature-layers entry {item!r} must be STUDENT_LAYER or STUDENT_LAYER:TEACHER_LAYER")
        pairs.append((student, teacher or student))
    return pairs


class DistillationTerm(nn.Module):
    """An ``extra_loss_terms`` entry of :func:`terralite.engine.train.train`: ``(images, logits, targets) -> loss``.

    ``kd``: ``logits`` = pixel-wise KL on logits (:func:`terralite.distillation.kd_kl_loss`); ``cwd`` =
    channel-wise distillation on the logits, or on the ``feature_pairs`` (student layer, teacher layer)
    when given; ``both`` = their sum. The teacher runs once per step, frozen, in eval mode, in fp16 on
    CUDA with ``half_teacher``. Feature pairs need :meth:`attach` (hooks on the student the engine built,
    1x1 conv adapters where channel counts differ, found with a probe of ``in_channels`` bands); the
    adapters are this module's parameters: the engine optimises them with the student and keeps them in
    its checkpoints under ``extra_terms``, never in the student's ``state_dict``.
    """

    def __init__(self, teacher: nn.Module, kd: str = "logits", tau: float = 1.0, alpha: float = 1.0,
                 feature_pairs: list[tuple[str, str]] | None = None, half_teacher: bool = False, ignore_index: int = 255,
                 in_channels: int = 3):
        super().__init__()
        self.in_channels = in_channels
        if kd not in KD_KINDS:
            raise TerraLiteError(f"--kd must be one of {', '.join(KD_KINDS)}, got {kd!r}")
        if tau <= 0:
            raise TerraLiteError(f"--tau must be positive, got {tau}")
        if feature_pairs and kd == "logits":
            raise TerraLiteError("--feature-layers needs --kd cwd or both (feature maps are distilled channel-wise)")
        self.kd, self.tau, self.alpha, self.ignore_index = kd, tau, alpha, ignore_index
        self.feature_pairs = list(feature_pairs or [])
        teacher = teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        if half_teacher and next(teacher.parameters()).device.type != "cuda":
            raise TerraLiteError("--half-teacher runs the teacher in fp16 on a CUDA device; drop it on the CPU")
        self.half = half_teacher
        if self.half:
            teacher = teacher.half()
        self._teacher = [teacher]  # a list, so that the teacher is not a sub-module (no training, no saving)
        self.teacher_taps = FeatureTaps(teacher, [t for _, t in self.feature_pairs], always=True) if self.feature_pairs else None
        self.student_taps: FeatureTaps | None = None
        self.adapters = nn.ModuleList()

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    def attach(self, student: nn.Module) -> None:
        """Hook the student's feature layers and build the adapters (nothing to do without feature pairs)."""
        if not self.feature_pairs:
            return
        if self.student_taps is not None:
            raise RuntimeError("this distillation term is already attached to a student; build one term per run")
        self.student_taps = FeatureTaps(student, [s for s, _ in self.feature_pairs])
        device = next(student.parameters()).device
        probe = torch.zeros(1, self.in_channels, 64, 64, device=device)
        was_training = student.training
        student.eval()  # eval: the probe must not move BN statistics; with gradients on, so the taps record
        student(probe)
        student.train(was_training)
        with torch.no_grad():
            self.teacher(probe.to(next(self.teacher.parameters()).dtype))
        self.adapters = nn.ModuleList()
        for s_name, t_name in self.feature_pairs:
            c_s, c_t = self.student_taps.pop(s_name).shape[1], self.teacher_taps.pop(t_name).shape[1]
            self.adapters.append(nn.Conv2d(c_s, c_t, 1) if c_s != c_t else nn.Identity())
        self.adapters.to(device)

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # the teacher stays frozen whatever the caller does
        return self

    def forward(self, images: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from terralite.distillation import kd_kl_loss

        with torch.no_grad():
            teacher_out = self.teacher(images.half() if self.half else images)
        teacher_logits = (teacher_out[0] if isinstance(teacher_out, (tuple, list)) else teacher_out).float()
        loss = logits.new_zeros(())
        if self.kd in ("logits", "both"):
            loss = loss + kd_kl_loss(logits, teacher_logits, targets, self.tau, self.ignore_index)
        if self.kd in ("cwd", "both"):
            if not self.feature_pairs:
                loss = loss + channel_wise_kl(logits, teacher_logits, self.tau)
            else:
                if self.student_taps is None:
                    raise RuntimeError("feature distillation needs attach(student) before training")
                for (s_name, t_name), adapter in zip(self.feature_pairs, self.adapters):
                    student_map = adapter(self.student_taps.pop(s_name))
                    loss = loss + channel_wise_kl(student_map, self.teacher_taps.pop(t_name).float(), self.tau)
        return self.alpha * loss
