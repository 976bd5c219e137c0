"""Test-time augmentation: run the model on transformed copies of the input and sum the logits.

Modes (``TTA_MODES`` → number of forward passes):

- ``none``  (1): the input as it is;
- ``hflip`` (2): identity + horizontal flip — the OpenEarthMap authors' definition of TTA;
- ``flips`` (4): identity, horizontal, vertical and both flips;
- ``d4``    (8): the dihedral group: 4 rotations by 90°, each with and without a horizontal flip
  (rotations need square inputs).

Logits are summed, not averaged: the argmax is the same and this matches the reference code.
"""

from __future__ import annotations

from typing import Callable

import torch

from terralite.errors import TerraLiteError

# (rotation quarter-turns k, horizontal flip) per pass
_TRANSFORMS = {
    "none": [(0, False)],
    "hflip": [(0, False), (0, True)],
    "flips": [(0, False), (0, True), (2, True), (2, False)],  # vflip = rot180 ∘ hflip; hvflip = rot180
    "d4": [(k, flip) for k in range(4) for flip in (False, True)],
}
TTA_MODES = {mode: len(t) for mode, t in _TRANSFORMS.items()}


def check_tta_mode(mode: str) -> str:
    if mode not in _TRANSFORMS:
        raise TerraLiteError(f"unknown TTA mode {mode!r}; valid modes: {', '.join(_TRANSFORMS)}")
    return mode


def check_tta_shape(mode: str, height: int, width: int) -> None:
    """Refuse inputs a mode cannot transform (d4's rotations need square tiles)."""
    check_tta_mode(mode)
    if mode == "d4" and height != width:
        raise TerraLiteError(f"TTA mode d4 rotates the input and needs square tiles, got {height}x{width}; use flips")


def transforms(mode: str) -> list[tuple[int, bool]]:
    """The views of ``mode`` as ``(quarter turns k, horizontal flip)``: view = rot90(hflip(x) if flip else x, k)."""
    return list(_TRANSFORMS[check_tta_mode(mode)])


def _forward(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    if flip:
        x = x.flip(-1)
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def _inverse(y: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    if k:
        y = torch.rot90(y, -k, dims=(-2, -1))
    return y.flip(-1) if flip else y


def tta_forward(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mode: str = "none") -> torch.Tensor:
    """Summed logits ``(B, C, H, W)`` of ``model`` over the transforms of ``mode`` (``model`` in eval mode)."""
    check_tta_shape(mode, *x.shape[-2:])
    total = None
    for k, flip in _TRANSFORMS[mode]:
        y = _inverse(model(_forward(x, k, flip)), k, flip)
        total = y if total is None else total + y
    return total
