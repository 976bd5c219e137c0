"""A tiny network shared by the benchmark tests: two convolutions, 3 → 8 → 4 channels."""

import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """conv3x3(3→8, bias) → sigmoid → conv1x1(8→4, no bias): 256 parameters, 248 MACs per pixel."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 4, 1, bias=False)

    def forward(self, x):
        return self.conv2(torch.sigmoid(self.conv1(x)))


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return TinyNet().eval()



@pytest.fixture
def tiny_spec():
    """A spec for the tiny net (never built from it: benchmark_model takes the module and its spec)."""
    return {"kind": "test", "label": "tiny", "in_channels": 3, "num_classes": 4}
