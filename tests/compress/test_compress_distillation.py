"""Channel-wise distillation values and the distillation loss term on tiny networks."""

import math

import pytest
import torch
from torch import nn

from terralite.compress.distillation import DistillationTerm, channel_wise_kl, parse_layer_pairs
from terralite.errors import TerraLiteError


def test_cwd_is_zero_for_identical_maps():
    t = torch.randn(2, 3, 8, 8)
    assert channel_wise_kl(t.clone(), t, tau=4.0).item() == pytest.approx(0.0, abs=1e-6)


def test_cwd_matches_a_hand_computed_value():
    # one channel over two positions: teacher softmax (1/2, 1/2), student softmax (1/4, 3/4)
    teacher = torch.zeros(1, 1, 1, 2)
    student = torch.tensor([0.0, math.log(3.0)]).view(1, 1, 1, 2)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert channel_wise_kl(student, teacher, tau=1.0).item() == pytest.approx(expected, rel=1e-5)
    # with tau=2 the maps are divided by 2 before the softmax, and the KL is scaled by 4
    s2 = torch.tensor([0.0, math.log(3.0) / 2]).view(1, 1, 1, 2)
    p = torch.softmax(s2.flatten(), 0)
    expected_tau2 = 4 * (0.5 * math.log(0.5 / p[0].item()) + 0.5 * math.log(0.5 / p[1].item()))
    assert channel_wise_kl(student, teacher, tau=2.0).item() == pytest.approx(expected_tau2, rel=1e-5)


def test_cwd_positive_and_resizes_student():
    teacher = torch.randn(2, 4, 8, 8)
    student = torch.randn(2, 4, 4, 4)
    assert channel_wise_kl(student, teacher).item() > 0
    with pytest.raises(ValueError, match="equal B and C"):
        channel_wise_kl(torch.randn(2, 3, 8, 8), teacher)


class TinyNet(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.head = nn.Conv2d(width, 8, 1)

    def forward(self, x):
        return self.head(self.body(x))


def test_logits_terms_vanish_when_student_equals_teacher():
    torch.manual_seed(0)
    teacher = TinyNet(6)
    images = torch.randn(2, 3, 16, 16)
    targets = torch.randint(0, 8, (2, 16, 16))
    with torch.no_grad():
        same = teacher.eval()(images)
    for kd in ("logits", "cwd", "both"):
        term = DistillationTerm(teacher, kd=kd, tau=2.0)
        assert term(images, same, targets).item() == pytest.approx(0.0, abs=1e-5)
        assert term(images, torch.randn_like(same), targets).item() > 0
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


def test_feature_cwd_trains_an_adapter_and_keeps_teacher_frozen():
    torch.manual_seed(0)
    teacher, student = TinyNet(6), TinyNet(4)
    term = DistillationTerm(teacher, kd="cwd", tau=4.0, feature_pairs=parse_layer_pairs(["body.2:body.2"]), in_channels=3)
    term.attach(student)
    assert isinstance(term.adapters[0], nn.Conv2d) and term.adapters[0].weight.shape == (6, 4, 1, 1)
    assert list(term.state_dict()) == ["adapters.0.weight", "adapters.0.bias"]  # what the engine checkpoints
    assert not any(n.startswith("teacher") for n, _ in term.named_parameters())  # the teacher is not a sub-module
    student.train()
    term.train()
    images = torch.randn(2, 3, 16, 16)
    loss = term(images, student(images), torch.zeros(2, 16, 16, dtype=torch.long))
    loss.backward()
    assert loss.item() > 0
    assert term.adapters[0].weight.grad is not None and student.body[0].weight.grad is not None
    assert not teacher.training


def test_bad_options_are_clear_errors():
    with pytest.raises(TerraLiteError, match="--kd"):
        DistillationTerm(TinyNet(4), kd="dark")
    with pytest.raises(TerraLiteError, match="--feature-layers needs"):
        DistillationTerm(TinyNet(4), kd="logits", feature_pairs=[("body", "body")])
    with pytest.raises(TerraLiteError, match="no layer named nope"):
        DistillationTerm(TinyNet(4), kd="cwd", feature_pairs=[("body", "nope")])
