"""The operators of derived FasterSeg networks (METHODS §5), as plain modules.

Every conv is 3x3, padding 1, no bias, followed by BatchNorm. A cell at stride 2 is its operator with
stride 2; zoomed operators reach stride 2 through their ↓2 resize and then do not resize back.
All resizes are bilinear with ``align_corners=True``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# Operator names in the order of the α logits (index 0 is skip, which derivation never keeps).
OP_NAMES = ("skip", "conv", "conv_2x", "zoomed_conv", "zoomed_conv_2x")


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize with ``align_corners=True`` (the method's convention everywhere)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def half_size(x: torch.Tensor) -> tuple[int, int]:
    """Half of a feature map's size, at least 1x1 (a 32x32 input has a 1x1 map at 1/32)."""
    return max(x.shape[-2] // 2, 1), max(x.shape[-1] // 2, 1)


class ConvBN(nn.Sequential):
    """Conv (no bias) → BN, optionally → ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1, relu: bool = True):
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel_size, stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Conv(nn.Module):
    """``conv``: conv-BN-ReLU (stride 1 or 2)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = ConvBN(c_in, c_out, 3, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(x)


class Conv2x(nn.Module):
    """``conv_2x``: two stacked conv-BN-ReLU (stride on the first); not dilated."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = ConvBN(c_in, c_out, 3, stride)
        self.conv2 = ConvBN(c_out, c_out, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class ZoomedConv(nn.Module):
    """``zoomed_conv``: ↓2 → conv-BN → (↑2 back at stride 1) → ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.conv1 = ConvBN(c_in, c_out, 3, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(resize(x, half_size(x)))
        if self.stride == 1:
            out = resize(out, tuple(x.shape[-2:]))
        return F.relu(out)


class ZoomedConv2x(nn.Module):
    """``zoomed_conv_2x``: ↓2 → conv-BN-ReLU → conv-BN → (↑2 back at stride 1) → ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.conv1 = ConvBN(c_in, c_out, 3, 1)
        self.conv2 = ConvBN(c_out, c_out, 3, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(resize(x, half_size(x))))
        if self.stride == 1:
            out = resize(out, tuple(x.shape[-2:]))
        return F.relu(out)


# The operators a derived network may contain (skip never survives derivation).
PLAIN_OPS = {"conv": Conv, "conv_2x": Conv2x, "zoomed_conv": ZoomedConv, "zoomed_conv_2x": ZoomedConv2x}


def build_op(name: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    """A plain operator by name (``conv``, ``conv_2x``, ``zoomed_conv``, ``zoomed_conv_2x``)."""
    return PLAIN_OPS[name](c_in, c_out, stride)


class Head(nn.Module):
    """3x3 ConvBNReLU to ``mid`` (= in if in ≤ 256 else in//2), then a 1x1 conv with bias to the classes."""

    def __init__(self, c_in: int, num_classes: int):
        super().__init__()
        mid = c_in if c_in <= 256 else c_in // 2
        self.conv3x3 = ConvBN(c_in, mid, 3)
        self.conv1x1 = nn.Conv2d(mid, num_classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1x1(self.conv3x3(x))


class Stem(nn.Sequential):
    """ConvBNReLU 3x3 s2, then two two-conv blocks s2: input → 1/8 resolution."""

    def __init__(self, c_in: int, widths: tuple[int, int, int]):
        c1, c2, c3 = widths
        super().__init__(ConvBN(c_in, c1, 3, 2), Conv2x(c1, c2, 2), Conv2x(c2, c3, 2))


class Refine32(nn.Module):
    """Fusion of a 1/32 branch up to 1/8 (METHODS §5).

    1x1 ConvBNReLU (c32 → c16h), ↑ to the 1/16 size, concat the branch's last 1/16 feature, 3x3 → c16h,
    1x1 → c8h, ↑ to 1/8, concat its last 1/8 feature, 3x3 → c8h.
    """

    def __init__(self, c32: int, c16_feat: int, c8_feat: int, c16h: int, c8h: int):
        super().__init__()
        self.reduce32 = ConvBN(c32, c16h, 1)
        self.fuse16 = ConvBN(c16h + c16_feat, c16h, 3)
        self.reduce16 = ConvBN(c16h, c8h, 1)
        self.fuse8 = ConvBN(c8h + c8_feat, c8h, 3)

    def forward(self, x32: torch.Tensor, x16: torch.Tensor, x8: torch.Tensor) -> torch.Tensor:
        out = resize(self.reduce32(x32), tuple(x16.shape[-2:]))
        out = self.fuse16(torch.cat([out, x16], dim=1))
        out = resize(self.reduce16(out), tuple(x8.shape[-2:]))
        return self.fuse8(torch.cat([out, x8], dim=1))


class Refine16(nn.Module):
    """Fusion of a 1/16 branch up to 1/8: 1x1 → c8h, ↑ to 1/8, concat its last 1/8 feature, 3x3 → c8h."""

    def __init__(self, c16: int, c8_feat: int, c8h: int):
        super().__init__()
        self.reduce16 = ConvBN(c16, c8h, 1)
        self.fuse8 = ConvBN(c8h + c8_feat, c8h, 3)

    def forward(self, x16: torch.Tensor, x8: torch.Tensor) -> torch.Tensor:
        out = resize(self.reduce16(x16), tuple(x8.shape[-2:]))
        return self.fuse8(torch.cat([out, x8], dim=1))


class FusionHead(nn.Module):
    """Concatenated branch outputs → 1x1 ConvBNReLU that keeps their width → head → bilinear to the input size.

    The fusion conv mixes the branches, it does not reduce them: ``c_in → c_in`` (2·8F·w for two branches),
    and the head is built on that width (METHODS §5). The original's fusion module also builds a
    channel-attention block that its forward never calls; it is not built here.
    """

    def __init__(self, c_in: int, num_classes: int):
        super().__init__()
        self.fusion = ConvBN(c_in, c_in, 1)
        self.head = Head(c_in, num_classes)

    def forward(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        return resize(self.head(self.fusion(torch.cat(features, dim=1))), size)
