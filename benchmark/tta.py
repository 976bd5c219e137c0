"""Test-time augmentation as it is timed: the flips and the merge are part of the measured call.

The modes of :data:`terralite.tta.TTA_MODES` — ``none``, ``hflip`` (identity + horizontal flip, the
OpenEarthMap authors' TTA), ``flips`` (4 views), ``d4`` (8 views) — are :func:`terralite.tta.tta_forward`:
one network call per view, logits summed, exactly as evaluation and prediction run them. One more mode
exists only here: ``hflip-batched`` computes the logits of ``hflip`` with one network call on a batch
holding both views, to show how much of TTA's cost batching removes (its mIoU is that of ``hflip``).

``forward`` is any callable from a torch tensor to logits — an eager module, or a wrapper around a
TensorRT engine — and the flips are torch ops on the runtime's device. ONNX Runtime runs TTA inside its
graph instead (:mod:`terralite.tta_graph`: the same views and sum as ONNX nodes, on the runtime's own
threads), and ``terralite predict --tta`` on an ONNX file uses that same graph.
"""

from __future__ import annotations

from typing import Callable

import torch

from terralite.errors import TerraLiteError
from terralite.tta import TTA_MODES, tta_forward

BATCHED_TTA_MODES = {"hflip-batched": "hflip"}
"""Benchmark-only modes → the :mod:`terralite.tta` mode whose logits they compute in one batched call."""

BENCH_TTA_MODES = {**{mode: 1 for mode in TTA_MODES}, "hflip-batched": 2}
"""TTA mode → batch multiplier of the network call (``hflip-batched`` runs both views at once)."""


def check_bench_tta(mode: str) -> str:
    if mode not in BENCH_TTA_MODES:
        raise TerraLiteError(f"unknown TTA mode {mode!r} for benchmarking; valid modes: {', '.join(BENCH_TTA_MODES)} "
                             "(hflip-batched = hflip's two views in one call on a batch of 2)")
    return mode


def eval_tta_mode(mode: str) -> str:
    """The :mod:`terralite.tta` mode that gives the same logits (for mIoU evaluation)."""
    return BATCHED_TTA_MODES.get(check_bench_tta(mode), mode)


def timed_tta_forward(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mode: str) -> torch.Tensor:
    """Summed logits ``(B, C, H, W)`` of ``forward`` over the views of ``mode``."""
    if mode != "hflip-batched":
        return tta_forward(forward, x, mode)
    batch = x.shape[0]
    y = forward(torch.cat([x, x.flip(-1)]))  # (2B, C, H, W)
    return y[:batch] + y[batch:].flip(-1)
