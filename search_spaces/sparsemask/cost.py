"""Analytic parameter and MAC counts of derived SparseMask networks, per connection, in fvcore's conventions.

fvcore (trace-based, the suite's counter) charges a conv ``Cin/groups · k² · Cout`` per output pixel (bias not
counted), an eval-mode affine BN 2 per element, a bilinear resize 4 per output element, an adaptive average
pool 1 per input element, and nothing for ReLU6 or additions. With those rules a network's count splits into

- the encoder up to the deepest tap used (one fvcore trace at 32x32 gives each block's count; scaled by the
  pixel ratio, which is exact because every encoder tensor scales with the input area when the sides are
  multiples of 32);
- a fixed part: the head's 1x1 conv at stride 2 and the final bilinear ×2;
- one BN per live stage;
- one term per kept connection: its 1x1 conv at the input's resolution plus, when the sizes differ, the
  resize to the stage size; plus the global pool when ``up0`` is used anywhere.

:class:`CostModel` gives these terms at a chosen input size (1024x1024 for reports and budgets), so the
budgeted search can price every connection and the sum equals fvcore's count of the built network
(checked in the tests).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from terralite.search_spaces.sparsemask.arch import arch_to_mask
from terralite.search_spaces.sparsemask.encoder import MobileNetV2Encoder, num_blocks
from terralite.search_spaces.sparsemask.topology import (
    DECODER_CHANNELS,
    HEAD_STRIDE,
    NUM_STAGES,
    TAP,
    TAP_CHANNELS,
    UP,
    deepest_tap,
    input_channels,
    input_hw,
    stage_hw,
)

_BASE = 32  # smallest input side the encoder accepts; its count is scaled from here


def fvcore_macs(model: torch.nn.Module, inputs: torch.Tensor) -> int:
    """fvcore's MAC count of ``model(inputs)`` in eval mode, warnings about uncounted ops silenced."""
    from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(model, inputs).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(analysis.total())
    finally:
        model.train(was_training)


@lru_cache(maxsize=None)
def _encoder_block_counts(in_channels: int) -> tuple[tuple[int, int], ...]:
    """(MACs at 32x32, parameters) of each of the encoder's 19 blocks, from one fvcore trace.

    Building the encoder draws its random initialisation; the global RNG is restored afterwards, because the
    first call happens at a point that depends on the process history (a resumed search must draw the
    same numbers as an uninterrupted one). The counts do not depend on the weights' values.
    """
    from fvcore.nn import FlopCountAnalysis

    with torch.random.fork_rng(devices=[]), torch.no_grad():
        encoder = MobileNetV2Encoder(in_channels).eval()
        analysis = FlopCountAnalysis(encoder, torch.zeros(1, in_channels, _BASE, _BASE))
        by_module = analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).by_module()
    return tuple((int(by_module[f"features.{i}"]), sum(p.numel() for p in block.parameters()))
                 for i, block in enumerate(encoder.features))


def _encoder_counts(in_channels: int, deepest: int) -> tuple[int, int]:
    """(MACs at 32x32, parameters) of the encoder for ``in_channels`` bands, built up to tap ``deepest``."""
    blocks = _encoder_block_counts(in_channels)[: num_blocks(deepest)]
    return sum(b[0] for b in blocks), sum(b[1] for b in blocks)


class CostModel:
    """Parameters and MACs of derived networks at input ``height x width`` (multiples of 32)."""

    def __init__(self, height: int = 1024, width: int | None = None, in_channels: int = 3, num_classes: int = 8,
                 decoder_channels: int = DECODER_CHANNELS):
        width = height if width is None else width
        if height % 32 or width % 32:
            raise ValueError(f"input size must be a multiple of 32, got {height}x{width}")
        self.height, self.width = height, width
        self.in_channels, self.num_classes, self.channels = in_channels, num_classes, decoder_channels
        head_pixels = (height // HEAD_STRIDE) * (width // HEAD_STRIDE)
        self.head_params = decoder_channels * num_classes + num_classes
        self.head_macs = decoder_channels * num_classes * head_pixels + 4 * num_classes * height * width
        tap0_h, tap0_w = input_hw(TAP, 0, height, width)
        self.pool_macs = TAP_CHANNELS[0] * tap0_h * tap0_w

    def encoder_macs(self, deepest: int = 0) -> int:
        """The encoder built up to tap ``deepest`` (0: the whole MobileNetV2 features)."""
        return _encoder_counts(self.in_channels, deepest)[0] * (self.height // _BASE) * (self.width // _BASE)

    def encoder_params(self, deepest: int = 0) -> int:
        return _encoder_counts(self.in_channels, deepest)[1]

    def stage_macs(self, stage: int) -> int:
        """The stage's BN (eval, affine: 2 per element)."""
        h, w = stage_hw(stage, self.height, self.width)
        return 2 * self.channels * h * w

    def stage_params(self, stage: int) -> int:
        return 2 * self.channels

    def connection_params(self, stage: int, kind: int, index: int) -> int:
        return input_channels(kind, index, self.channels) * self.channels

    def connection_macs(self, stage: int, kind: int, index: int) -> int:
        """1x1 conv at the input's resolution + bilinear resize to the stage size when they differ."""
        ih, iw = input_hw(kind, index, self.height, self.width)
        sh, sw = stage_hw(stage, self.height, self.width)
        macs = input_channels(kind, index, self.channels) * self.channels * ih * iw
        if (ih, iw) != (sh, sw):
            macs += 4 * self.channels * sh * sw
        return macs

    def connection_table(self) -> np.ndarray:
        """MACs of every candidate connection as ``[9, 9, 2]`` (0 where none exists)."""
        table = np.zeros((NUM_STAGES, NUM_STAGES, 2), dtype=np.int64)
        for s in range(NUM_STAGES):
            for kind in (TAP, UP):
                for idx in range(s + 1):
                    table[s, idx, kind] = self.connection_macs(s, kind, idx)
        return table

    def mask_macs(self, mask: np.ndarray) -> int:
        mask = np.asarray(mask, dtype=bool)
        total = self.encoder_macs(deepest_tap(mask)) + self.head_macs
        if mask[:, 0, UP].any():
            total += self.pool_macs
        for s in range(NUM_STAGES):
            if mask[s].any():
                total += self.stage_macs(s)
                for kind in (TAP, UP):
                    for idx in range(s + 1):
                        if mask[s, idx, kind]:
                            total += self.connection_macs(s, kind, idx)
        return int(total)

    def mask_params(self, mask: np.ndarray) -> int:
        mask = np.asarray(mask, dtype=bool)
        total = self.encoder_params(deepest_tap(mask)) + self.head_params
        for s in range(NUM_STAGES):
            if mask[s].any():
                total += self.stage_params(s)
                for kind in (TAP, UP):
                    for idx in range(s + 1):
                        if mask[s, idx, kind]:
                            total += self.connection_params(s, kind, idx)
        return int(total)

    def arch_macs(self, arch: dict) -> int:
        return self.mask_macs(arch_to_mask(arch))

    def arch_params(self, arch: dict) -> int:
        return self.mask_params(arch_to_mask(arch))

    def arch_gmacs(self, arch: dict) -> float:
        return self.arch_macs(arch) / 1e9
