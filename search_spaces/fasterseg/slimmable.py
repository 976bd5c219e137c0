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
        weight = self.weight[:c_out, : x.shape[1]]
        if _train_on_cpu(x) and x.shape[-2] * x.shape[-1] <= SMALL_INPUT_PIXELS:
            return _conv_as_matmul(x, weight, self.stride, self.padding)
        return F.conv2d(x, weight, None, self.stride, self.padding)


# At the 1/32 scale of a search crop (2x2 or 1x1 pixels at 64 px) oneDNN's conv backward costs ~14 ms for a
# 384→384 3x3 (weight reorders dominate); the same conv as unfold + matmul costs ~6 ms, which made an OEM-preset
# supernet step at 64 px about 25 % faster. Larger inputs stay on F.conv2d, which is faster from 4x4 pixels on.
SMALL_INPUT_PIXELS = 4


def _train_on_cpu(x: torch.Tensor) -> bool:
    """A CPU forward that will be differentiated (not an export, not a timing of the op as deployed)."""
    return x.device.type == "cpu" and torch.is_grad_enabled() and not torch.onnx.is_in_onnx_export()


def _conv_as_matmul(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """``F.conv2d(x, weight, None, stride, padding)`` computed as im2col + matmul: (B, C, H, W) → (B, O, H', W')."""
    b, _, h, w = x.shape
    k = weight.shape[-1]
    h_out, w_out = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    cols = F.unfold(x, k, padding=padding, stride=stride)  # (B, C·k·k, H'·W')
    return (weight.reshape(weight.shape[0], -1) @ cols).reshape(b, weight.shape[0], h_out, w_out)


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
