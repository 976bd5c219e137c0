"""The dense decoder supernet the SparseMask search trains: all 90 connections, one gate each.

Each connection: ReLU6 → 1x1 conv to 64 ch → BN → bilinear resize to the stage size → × gate ``w``; a stage
sums its connections and applies its BN; the head (ReLU6, 1x1 conv with bias at stride 2, bilinear ×2) is
the derived network's. Gates start at 1.0; in training the forward uses ``clamp(w + N(0, σ²), 0, 2)`` with
σ = 0.1, in eval the noiseless ``clamp(w, 0, 2)`` (so validation is deterministic; the official code kept the
noise in eval too). :meth:`SparseMaskSupernet.clamp_gates_` clamps the stored gates to [0, 2] after a step.

The per-connection BNs have no affine parameters: the official search freezes every BN's affine at
(1, 0), and a learnable per-connection scale could take over the gate's role (scaling a connection down
and its BN weight up would evade the sparsity loss). The per-stage BN is affine, as in the derived network.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from terralite.search_spaces.sparsemask.encoder import MobileNetV2Encoder
from terralite.search_spaces.sparsemask.network import init_weights, resize_to
from terralite.search_spaces.sparsemask.topology import (
    DECODER_CHANNELS,
    NUM_STAGES,
    TAP,
    UP,
    input_channels,
    input_name,
    stage_name,
)

GATE_INIT = 1.0
GATE_MAX = 2.0
GATE_NOISE_STD = 0.1


class GatedDecoderStage(nn.Module):
    """All candidate connections of stage ``stage`` with their gates ``(stage+1, 2)`` (column 0 taps, 1 ups)."""

    def __init__(self, stage: int, decoder_channels: int = DECODER_CHANNELS):
        super().__init__()
        self.stage = stage
        self.convs = nn.ModuleDict()
        for kind in (TAP, UP):
            for idx in range(stage + 1):
                self.convs[input_name(kind, idx)] = nn.Sequential(
                    nn.Conv2d(input_channels(kind, idx, decoder_channels), decoder_channels, 1, bias=False),
                    nn.BatchNorm2d(decoder_channels, affine=False))
        self.gate = nn.Parameter(torch.full((stage + 1, 2), GATE_INIT))
        self.bn = nn.BatchNorm2d(decoder_channels)

    def gates(self, noise_std: float) -> torch.Tensor:
        """Gates used by this forward: noisy and clamped in training, clamped in eval."""
        gate = self.gate
        if self.training and noise_std > 0:
            gate = gate + torch.randn_like(gate) * noise_std
        return gate.clamp(0.0, GATE_MAX)

    def forward(self, features: dict[str, torch.Tensor], size: tuple[int, int], noise_std: float) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.gates(noise_std)
        out = 0.0
        for kind in (TAP, UP):
            for idx in range(self.stage + 1):
                name = input_name(kind, idx)
                out = out + w[idx, kind] * resize_to(self.convs[name](features[name]), size)
        return self.bn(out), w


class SparseMaskSupernet(nn.Module):
    """Encoder + gated dense decoder + head; ``forward(x) -> logits (B, classes, H, W)``.

    After each forward, ``last_gates`` holds the per-stage gates that forward used (for the sparsity loss).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 8, encoder_weights: str | None = None,
                 decoder_channels: int = DECODER_CHANNELS, noise_std: float = GATE_NOISE_STD):
        super().__init__()
        self.noise_std = noise_std
        self.decoder_channels = decoder_channels
        self.encoder = MobileNetV2Encoder(in_channels, weights=encoder_weights)
        self.decoder = nn.ModuleDict({stage_name(s): GatedDecoderStage(s, decoder_channels) for s in range(NUM_STAGES)})
        self.head = nn.Conv2d(decoder_channels, num_classes, 1, bias=True)
        init_weights(self.decoder)
        init_weights(self.head)
        self.last_gates: list[torch.Tensor] = []

    def gate_parameters(self) -> list[nn.Parameter]:
        return [self.decoder[stage_name(s)].gate for s in range(NUM_STAGES)]

    def decoder_parameters(self) -> Iterator[nn.Parameter]:
        """Decoder and head weights, gates excluded (they get their own optimiser group)."""
        gates = {id(p) for p in self.gate_parameters()}
        for p in list(self.decoder.parameters()) + list(self.head.parameters()):
            if id(p) not in gates:
                yield p

    @torch.no_grad()
    def clamp_gates_(self) -> None:
        for gate in self.gate_parameters():
            gate.clamp_(0.0, GATE_MAX)

    @torch.no_grad()
    def gate_values(self) -> np.ndarray:
        """Stored gates as ``[9 stages, 9 inputs, 2 kinds]`` (0 where no connection exists)."""
        out = np.zeros((NUM_STAGES, NUM_STAGES, 2))
        for s, gate in enumerate(self.gate_parameters()):
            out[s, : s + 1] = gate.detach().float().cpu().numpy()
        return out

    @torch.no_grad()
    def set_gate_values(self, values: np.ndarray) -> None:
        for s, gate in enumerate(self.gate_parameters()):
            gate.copy_(torch.as_tensor(np.asarray(values)[s, : s + 1], dtype=gate.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        taps = self.encoder(x)
        features = {input_name(TAP, j): F.relu6(t) for j, t in enumerate(taps)}
        features["up0"] = F.relu6(F.adaptive_avg_pool2d(taps[0], 1))
        gates = []
        for s in range(NUM_STAGES):
            out, w = self.decoder[stage_name(s)](features, tuple(taps[s].shape[-2:]), self.noise_std)
            features[input_name(UP, s + 1)] = F.relu6(out)
            gates.append(w)
        self.last_gates = gates
        logits = self.head(features[input_name(UP, NUM_STAGES)])
        return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=True)
