import json

import numpy as np
import pytest
import torch
from torch import nn

from terralite.benchmark.profiler import count_all_params, count_params, profile_model
from terralite.cli import main


def test_profile_matches_hand_count(tiny):
    result = profile_model(tiny, size=32, in_channels=3)
    # params: 8*3*3*3 + 8 (bias) + 4*8 = 256; MACs: 32*32 * (8*3*9 + 4*8) = 1024 * 248
    assert result["params_m"] * 1e6 == pytest.approx(256)
    assert result["params_total_m"] * 1e6 == pytest.approx(256)
    assert result["gmacs"] * 1e9 == pytest.approx(1024 * 248)
    assert result["flop_counter_gmacs"] * 1e9 == pytest.approx(1024 * 248)
    assert result["disagreement_pct"] == pytest.approx(0)
    assert result["flagged"] is False
    assert result["flop_counter"] == "fvcore"
    assert result["unsupported_ops"] == {"aten::sigmoid": 1}  # elementwise: fvcore skips it and says so
    assert result["input_shape"] == [1, 3, 32, 32]


def test_profile_cli(capsys):
    assert main(["profile", "unet-resnet18", "--size", "64", "--in-channels", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "unet-resnet18" and result["input_shape"] == [1, 4, 64, 64]
    assert result["params_m"] == pytest.approx(14.329, abs=0.01) and result["params_total_m"] == pytest.approx(result["params_m"])
    assert result["gmacs"] == pytest.approx(result["flop_counter_gmacs"], rel=0.02)
    assert main(["profile", "unet-resnet18", "--size", "100"]) == 2
    assert "multiple of 32" in capsys.readouterr().err
    assert main(["profile", "unet-nope", "--size", "64"]) == 2
    assert "unknown baseline 'unet-nope'" in capsys.readouterr().err


class UnusedHeadNet(nn.Module):
    """A parameter of its own (not of a leaf), one conv called twice, and a head that runs only in training."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1, 3, 1, 1))  # 3
        self.body = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())  # 12, called twice
        self.head = nn.Conv2d(3, 2, 1, bias=False)  # 6
        self.aux = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 2, 1))  # 448 + 34

    def forward(self, x):
        h = self.body(self.body(x * self.scale))
        return (self.head(h), [self.aux(h)]) if self.training else self.head(h)


def test_deployed_params_leave_out_training_only_heads():
    net = UnusedHeadNet().train()
    assert count_all_params(net) == 3 + 12 + 6 + 448 + 34
    assert count_params(net, in_channels=3) == 3 + 12 + 6
    assert net.training  # the mode it had
    result = profile_model(net, size=32, in_channels=3)
    assert result["params_m"] * 1e6 == pytest.approx(21)
    assert result["params_total_m"] * 1e6 == pytest.approx(503)


def test_fasterseg_student_params_exclude_its_auxiliary_heads():
    from terralite.search_spaces.fasterseg.space import FasterSegSearchSpace

    space = FasterSegSearchSpace.from_preset("tiny")
    net = space.build(space.sample(np.random.default_rng(0)))
    aux = sum(p.numel() for name, p in net.named_parameters() if name.startswith("aux"))
    assert aux > 0
    assert count_params(net, in_channels=3) == sum(p.numel() for p in net.parameters()) - aux
