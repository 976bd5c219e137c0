"""Joint transforms of (image, label) tensor pairs: crops, flips, 90° rotations, padding, resizing.

Images are float tensors ``(C, H, W)``, labels int64 ``(H, W)``. Random transforms draw from the
``generator`` they are given (reproducible) or, by default, from torch's global RNG — which the DataLoader
seeds differently in every worker, so workers do not repeat each other's crops.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from terralite.data.classes import IGNORE_INDEX
from terralite.errors import TerraLiteError

Pair = tuple[torch.Tensor, torch.Tensor]


def pad_to_size(image: torch.Tensor, label: torch.Tensor, height: int, width: int,
                image_value: float = 0.0, label_value: int = IGNORE_INDEX) -> Pair:
    """Pad bottom/right to at least ``height`` x ``width``; labels are padded with the ignore index."""
    pad_h = max(0, height - image.shape[-2])
    pad_w = max(0, width - image.shape[-1])
    if pad_h == 0 and pad_w == 0:
        return image, label
    image = F.pad(image, (0, pad_w, 0, pad_h), value=image_value)
    label = F.pad(label, (0, pad_w, 0, pad_h), value=label_value)
    return image, label


def pad_to_multiple(image: torch.Tensor, label: torch.Tensor, multiple: int = 32) -> Pair:
    """Pad bottom/right so both sides are multiples of ``multiple`` (padding ignored by loss and metrics)."""
    height = -(-image.shape[-2] // multiple) * multiple
    width = -(-image.shape[-1] // multiple) * multiple
    return pad_to_size(image, label, height, width)


def resize_to_multiple(image: torch.Tensor, label: torch.Tensor, multiple: int = 32) -> Pair:
    """Resize to the nearest multiple of ``multiple`` per side: image bilinear, label nearest."""
    height = max(multiple, round(image.shape[-2] / multiple) * multiple)
    width = max(multiple, round(image.shape[-1] / multiple) * multiple)
    if (height, width) == tuple(image.shape[-2:]):
        return image, label
    image = F.interpolate(image[None].float(), size=(height, width), mode="bilinear", align_corners=False)[0]
    label = F.interpolate(label[None, None].float(), size=(height, width), mode="nearest")[0, 0].to(label.dtype)
    return image, label


def _randint(high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(high, (1,), generator=generator).item())


class RandomCrop:
    """Random ``size`` crop of both tensors; smaller inputs are padded first (labels with the ignore index)."""

    def __init__(self, size: int | Sequence[int], generator: torch.Generator | None = None):
        self.size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if min(self.size) <= 0:
            raise TerraLiteError(f"crop size must be positive, got {size}")
        self.generator = generator

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> Pair:
        height, width = self.size
        image, label = pad_to_size(image, label, height, width)
        top = _randint(image.shape[-2] - height + 1, self.generator)
        left = _randint(image.shape[-1] - width + 1, self.generator)
        return (image[..., top : top + height, left : left + width],
                label[..., top : top + height, left : left + width])


class RandomFlipRotate:
    """Random horizontal/vertical flips (each with probability ``p_flip``) and a random multiple of 90°.

    90°/270° rotations are only drawn for square inputs, so that batch shapes never change.
    """

    def __init__(self, p_flip: float = 0.5, rotate: bool = True, generator: torch.Generator | None = None):
        self.p_flip = float(p_flip)
        self.rotate = bool(rotate)
        self.generator = generator

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> Pair:
        draws = torch.rand(2, generator=self.generator)
        if draws[0] < self.p_flip:
            image, label = image.flip(-1), label.flip(-1)
        if draws[1] < self.p_flip:
            image, label = image.flip(-2), label.flip(-2)
        if self.rotate:
            square = image.shape[-1] == image.shape[-2]
            k = _randint(4, self.generator) if square else 2 * _randint(2, self.generator)
            if k:
                image, label = torch.rot90(image, k, (-2, -1)), torch.rot90(label, k, (-2, -1))
        return image.contiguous(), label.contiguous()


class Compose:
    """Apply pair transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[torch.Tensor, torch.Tensor], Pair]]):
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> Pair:
        for transform in self.transforms:
            image, label = transform(image, label)
        return image, label


def train_transform(crop_size: int | None = None, flip_rotate: bool = True,
                    generator: torch.Generator | None = None) -> Compose:
    """The usual training pipeline: optional random crop, then optional flips/rotations."""
    steps: list = []
    if crop_size:
        steps.append(RandomCrop(crop_size, generator=generator))
    if flip_rotate:
        steps.append(RandomFlipRotate(generator=generator))
    return Compose(steps)
