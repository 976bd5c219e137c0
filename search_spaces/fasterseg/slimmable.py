"""Width-switchable operators of the FasterSeg supernet (slimmable convs, one BatchNorm per width).

A slimmable conv keeps the weights of its widest setting and uses the first ``c_out`` filters over the
first ``x.shape[1]`` input channels; each output width has its own BatchNorm (switchable BN), because the
statistics of a narrow slice differ from those of the full layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from terralite.search_spaces.fasterseg.ops import OP_NAMES, half_size, resize


class SlimConv(nn.Module):
    """A conv (no bias) sliced to ``c_out`` filters over the input's channels."""

    def __init__(self, c_in_max: int, c_out_max: int, kernel_size: int = 3, stride: int = 1):
        super().__init__()
        self.stride, self.padding = stride, kernel_size // 2
        self.weight = nn.Parameter(torch.empty(c_out_max, c_in_max, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default

    def forward(self, x: torch.Tensor, c_out: int) -> torch.Tensor:
        return F.conv2d(x, self.weight[:c_out, : x.shape[1]], None, self.stride, self.padding)


class SwitchableBN(nn.Module):
    """One BatchNorm per output width."""

    def __init__(self, widths: list[int]):
        super().__init__()
        self.bns = nn.ModuleDict({str(w): nn.BatchNorm2d(w) for w in sorted(set(widths))})

    def forward(self, x: torch.Tensor, c_out: int) -> torch.Tensor:
        return self.bns[str(c_out)](x)


class SlimConvBN(nn.Module):
    """Slimmable conv → switchable BN (→ ReLU)."""

    def __init__(self, c_in_max: int, out_widths: list[int], kernel_size: int = 3, stride: int = 1, relu: bool = True):
        super().__init__()
        self.conv = SlimConv(c_in_max, max(out_widths), kernel_size, stride)
        self.bn = SwitchableBN(out_widths)
        self.relu = relu

    def forward(self, x: torch.Tensor, c_out: int) -> torch.Tensor:
        out = self.bn(self.conv(x, c_out), c_out)
        return F.relu(out) if self.relu else out


class SlimSkip(nn.Module):
    """``skip``: 1x1 ConvBNReLU at stride 1 (widths differ in the supernet), factorised reduce at stride 2."""

    def __init__(self, c_in_max: int, out_widths: list[int], stride: int):
        super().__init__()
        self.stride = stride
        if stride == 1:
            self.conv_a = SlimConv(c_in_max, max(out_widths), 1)
        else:
            # two stride-2 1x1 convs on pixel grids offset by one, so no input pixel is ignored
            self.conv_a = SlimConv(c_in_max, max(out_widths) // 2, 1, 2)
            self.conv_b = SlimConv(c_in_max, max(out_widths) - max(out_widths) // 2, 1, 2)
        self.bn = SwitchableBN(out_widths)

    def forward(self, x: torch.Tensor, c_out: int) -> torch.Tensor:
        if self.stride == 1:
            out = self.conv_a(x, c_out)
        else:
            out = torch.cat([self.conv_a(x, c_out // 2), self.conv_b(x[:, :, 1:, 1:], c_out - c_out // 2)], dim=1)
        return F.relu(self.bn(out, c_out))


class SlimConvOp(nn.Module):
    """``conv`` / ``conv_2x`` (``double``): conv-BN-ReLU (twice), stride on the first."""

    def __init__(self, c_in_max: int, out_widths: list[int], stride: int, double: bool):
        super().__init__()
        self.conv1 = SlimConvBN(c_in_max, out_widths, 3, stride)
        self.conv2 = SlimConvBN(max(out_widths), out_widths, 3, 1) if double else None

    def forward(self, x: torch.Tensor, c_out: int) -> torch.Tensor:
        out = self.conv1(x, c_out)
        return self.conv2(out, c_out) if self.conv2 is not None else out


class SlimZoomedOp(nn.Module):
    """``zoomed_conv`` / ``zoomed_conv_2x``: ↓2, conv(s), ↑2 back at stride 1, ReLU (see ``ops``)."""

    def __init__(self, c_in_max: int, out_widths: list[int], stride: int, double: bool):
        super().__init__()
        self.stride = stride
        self.conv1 = SlimConvBN(c_in_max, out_widths, 3, 1, relu=double)
        self.conv2 = SlimConvBN(max(out_widths), out_widths, 3, 1, relu=False) if double else None

    def forward(self, x: torch.Tensor, c_out: int) -> torch.Tensor:
        out = self.conv1(resize(x, half_size(x)), c_out)
        if self.conv2 is not None:
            out = self.conv2(out, c_out)
        if self.stride == 1:
            out = resize(out, tuple(x.shape[-2:]))
        return F.relu(out)


def build_slim_op(name: str, c_in_max: int, out_widths: list[int], stride: int) -> nn.Module:
    if name == "skip":
        return SlimSkip(c_in_max, out_widths, stride)
    if name in ("conv", "conv_2x"):
        return SlimConvOp(c_in_max, out_widths, stride, double=name == "conv_2x")
    return SlimZoomedOp(c_in_max, out_widths, stride, double=name == "zoomed_conv_2x")


class MixedOp(nn.Module):
    """All operators of a cell side by side; the output is their α-weighted sum at width ``c_out``."""

    def __init__(self, c_in_max: int, out_widths: list[int], stride: int):
        super().__init__()
        self.ops = nn.ModuleList(build_slim_op(name, c_in_max, out_widths, stride) for name in OP_NAMES)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, c_out: int) -> torch.Tensor:
        return sum(w * op(x, c_out) for w, op in zip(weights, self.ops))
