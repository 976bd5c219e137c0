"""The fixed wiring of the SparseMask search space (METHODS.md §2 and §5).

Encoder taps are indexed deep → shallow, as the official code does (``j = 0`` is the final 1x1 conv):

====  ==========================  ========  ======
tap   MobileNetV2 point           channels  stride
====  ==========================  ========  ======
0     final 1x1 conv              1280      32
1     bottleneck 6                320       32
2     bottleneck 5                160       32
3     bottleneck 4                96        16
4     bottleneck 3                64        16
5     bottleneck 2                32        8
6     bottleneck 1                24        4
7     bottleneck 0                16        2
8     stem conv                   32        2
====  ==========================  ========  ======

Decoder stage ``i`` (0..8) outputs at the resolution of tap ``i`` and may take the inputs ``tap0 .. tapI``
("down" inputs) and ``up0 .. upI`` ("up" inputs): ``up0`` is the global average pool of tap 0 and ``upK``
(K ≥ 1) is the output of stage K−1. That is 2·(i+1) candidates for stage i and 90 in all.

A connectivity *mask* is a boolean array ``[9 stages, 9 inputs, 2 kinds]`` (kind 0 = tap, 1 = up), the
layout of the official ``prune`` output; entries with input index > stage are always False.
"""

from __future__ import annotations

import re

import numpy as np

NUM_STAGES = 9
TAP_CHANNELS = (1280, 320, 160, 96, 64, 32, 24, 16, 32)
TAP_STRIDES = (32, 32, 32, 16, 16, 8, 4, 2, 2)
#: Output stride of the head (stage 8 works at the resolution of the stem tap).
HEAD_STRIDE = TAP_STRIDES[-1]
DECODER_CHANNELS = 64
KINDS = ("tap", "up")
TAP, UP = 0, 1

_NAME = re.compile(r"^(tap|up)([0-9])$")


def stage_name(stage: int) -> str:
    return f"stage{stage}"


def input_name(kind: int, index: int) -> str:
    """``(TAP, 3)`` → ``"tap3"``; ``(UP, 0)`` → ``"up0"``."""
    return f"{KINDS[kind]}{index}"


def parse_input_name(name: str) -> tuple[int, int] | None:
    """``"tap3"`` → ``(TAP, 3)``; None when the name is not of the form tapJ / upK with a digit 0..8."""
    match = _NAME.match(name) if isinstance(name, str) else None
    if match is None:
        return None
    index = int(match.group(2))
    if index >= NUM_STAGES:
        return None
    return KINDS.index(match.group(1)), index


def candidates(stage: int) -> list[str]:
    """Candidate input names of one stage: taps first, then ups, each in index order."""
    return [input_name(TAP, j) for j in range(stage + 1)] + [input_name(UP, k) for k in range(stage + 1)]


def num_candidates(stage: int) -> int:
    return 2 * (stage + 1)


def all_connections() -> list[tuple[int, int, int]]:
    """Every candidate connection as ``(stage, kind, index)``: 90 of them."""
    return [(s, kind, idx) for s in range(NUM_STAGES) for kind in (TAP, UP) for idx in range(s + 1)]


def valid_entries() -> np.ndarray:
    """Boolean ``[9, 9, 2]``: True where a connection exists in the search space (input index ≤ stage)."""
    stage = np.arange(NUM_STAGES)[:, None, None]
    index = np.arange(NUM_STAGES)[None, :, None]
    return np.broadcast_to(index <= stage, (NUM_STAGES, NUM_STAGES, 2)).copy()


def input_channels(kind: int, index: int, decoder_channels: int = DECODER_CHANNELS) -> int:
    """Channels entering a connection: a tap's, the pooled deepest tap's (up0), or a stage output's."""
    if kind == TAP or index == 0:
        return TAP_CHANNELS[index if kind == TAP else 0]
    return decoder_channels


def input_stride(kind: int, index: int) -> int | None:
    """Output stride of an input; None for ``up0`` (global pooled: 1x1 whatever the input size)."""
    if kind == TAP:
        return TAP_STRIDES[index]
    return None if index == 0 else TAP_STRIDES[index - 1]


def input_hw(kind: int, index: int, height: int, width: int) -> tuple[int, int]:
    stride = input_stride(kind, index)
    return (1, 1) if stride is None else (height // stride, width // stride)


def stage_hw(stage: int, height: int, width: int) -> tuple[int, int]:
    return height // TAP_STRIDES[stage], width // TAP_STRIDES[stage]


def deepest_tap(mask: np.ndarray) -> int:
    """Index of the deepest encoder tap a mask needs (``up0`` pools tap 0, so it needs tap 0)."""
    mask = np.asarray(mask, dtype=bool)
    used = [j for j in range(NUM_STAGES) if mask[:, j, TAP].any()] + ([0] if mask[:, 0, UP].any() else [])
    return min(used) if used else NUM_STAGES - 1
