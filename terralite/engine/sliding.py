"""Sliding-window inference for inputs larger than a window: overlapping windows, logits averaged."""

from __future__ import annotations

from typing import Callable

import torch

from terralite.data.large_raster import window_offsets
from terralite.errors import TerraLiteError


def sliding_window_logits(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, window: int, overlap: float = 0.25) -> torch.Tensor:
    """Logits ``(B, K, H, W)`` of ``fn`` over ``x (B, C, H, W)``; whole input when both sides fit in ``window``.

    Windows overlap by ``overlap`` of their side; overlapping logits are averaged. ``window`` should be a
    multiple of the network's output stride (32).
    """
    height, width = x.shape[-2:]
    if height <= window and width <= window:
        return fn(x)
    if not 0 <= overlap < 1:
        raise TerraLiteError(f"window overlap must be in [0, 1), got {overlap}")
    win_h, win_w = min(window, height), min(window, width)
    stride = max(1, int(round(window * (1 - overlap))))
    total = None
    count = torch.zeros(1, 1, height, width, device=x.device)
    for top in window_offsets(height, win_h, stride):
        for left in window_offsets(width, win_w, stride):
            out = fn(x[..., top : top + win_h, left : left + win_w])
            if total is None:
                total = torch.zeros(x.shape[0], out.shape[1], height, width, device=x.device, dtype=out.dtype)
            total[..., top : top + win_h, left : left + win_w] += out
            count[..., top : top + win_h, left : left + win_w] += 1
    return total / count
