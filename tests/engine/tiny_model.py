"""A tiny segmentation network registered as the baseline ``tiny-test``, so engine tests run in seconds.

It has what the engine must handle: BatchNorm, dropout (consumes the RNG), an auxiliary head in training
mode (``(logits, [aux])``), a ``decoder.`` parameter prefix, and output at the input size in eval mode.
"""

from __future__ import annotations

from pathlib import Path

import torch.nn.functional as F
from torch import nn

NAME = "tiny-test"
TINY_CLI = Path(__file__).parent / "tiny_cli.py"  # `terralite` with this model registered, for subprocess tests


class TinySegNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(8, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.Dropout2d(0.1))
        self.decoder = nn.Conv2d(16, num_classes, 1)
        self.aux = nn.Conv2d(8, num_classes, 1)

    def forward(self, x):
        feat = self.stem(x)  # (B, 8, H/2, W/2)
        logits = F.interpolate(self.decoder(self.body(feat)), size=x.shape[-2:], mode="bilinear", align_corners=False)
        if self.training:
            return logits, [self.aux(feat)]  # aux at half resolution: the engine upsamples it
        return logits


def register() -> None:
    from terralite.benchmark.zoo import BASELINES

    if NAME not in BASELINES:
        BASELINES.register(NAME, TinySegNet)
