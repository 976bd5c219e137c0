"""Derivation of a FasterSeg architecture from architecture parameters (METHODS §2 and §5).

Per branch: the downsampling positions come from β (one for a 1/16 branch; for a 1/32 branch the ordered
pair maximising the product of the two down probabilities), the ops from α with the skip rules, the widths
from the ratio logits of the node each cell writes. The parameters are plain arrays here, so the rules can be
tested without a supernet: ``alphas[j]`` (rows = layers j..L-1), ``betas[j]`` for j = 1, 2 (rows = layers
j+1..L-1, column 0 = down), ``ratios[j]`` (rows = layers ``WIDTH_OFFSET[j]``..L-2) or ``None`` (full width).
"""

from __future__ import annotations

import numpy as np

from terralite.search_spaces.fasterseg.config import SCALES
from terralite.search_spaces.fasterseg.ops import OP_NAMES
from terralite.search_spaces.fasterseg.supernet import WIDTH_OFFSET

DOWN, KEEP = 0, 1
SKIP = OP_NAMES.index("skip")


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def downsample_positions(betas: list, layers: int, last: int) -> list[int]:
    """Layers whose cell downsamples, for a branch ending at scale index ``last`` (0, 1, 2).

    1/16: one downsample at ``k + 1`` for the row ``k`` of β₁[1:-1] with the largest down probability
    (row k of β₁ is the cell at layer k+2 reading the down output of layer k+1).
    1/32: the ordered pair (i, j), i ≤ j-2, maximising β₁[i, down]·β₂[j, down]: downsamples at i+1, j+2.
    """
    if last == 0:
        return []
    b1 = _softmax(np.asarray(betas[1], dtype=np.float64))
    if last == 1:
        rows = range(1, layers - 3)  # β₁[1:-1]
        k = max(rows, key=lambda r: (b1[r, DOWN], -r))  # ties → earliest
        return [k + 1]
    b2 = _softmax(np.asarray(betas[2], dtype=np.float64))
    best, best_ij = -1.0, None
    for j in range(len(b2)):
        for i in range(0, j - 1):
            prob = b1[i, DOWN] * b2[j, DOWN]
            if prob > best:
                best, best_ij = prob, (i, j)
    i, j = best_ij
    return [i + 1, j + 2]


def path_scales(layers: int, downs: list[int]) -> list[int]:
    """Scale index (0, 1, 2) of the cell at each layer."""
    path, scale = [], 0
    for k in range(layers):
        path.append(scale)
        if k in downs:
            scale += 1
    return path


def select_ops(alphas: list, path: list[int], downs: list[int]) -> tuple[list[int], set[int]]:
    """Ops per position and the positions whose skip cell is removed (METHODS §5 skip rules).

    No skip at a downsampling cell or at the branch's last cell (it outputs the head width); an all-skip
    segment (run of cells between downsamplings) keeps its least-likely skip as a real op; at most
    L − min_len skips are removed, the most likely ones, with min_len = round(L/3) + 2·last; a skip that
    is not removed takes the next-best op.
    """
    L = len(path)
    probs = [_softmax(np.asarray(alphas[path[k]][k - path[k]], dtype=np.float64)) for k in range(L)]
    ops = [int(np.argmax(p)) for p in probs]

    def next_best(k: int) -> int:
        return int(np.argmax(probs[k][1:])) + 1

    for k in range(L):
        if ops[k] == SKIP and (k in downs or k == L - 1):
            ops[k] = next_best(k)
    bounds = [-1] + sorted(downs) + [L]
    for a, b in zip(bounds[:-1], bounds[1:]):
        segment = list(range(a + 1, b))
        if segment and all(ops[k] == SKIP for k in segment):
            keep = min(segment, key=lambda k: probs[k][SKIP])
            ops[keep] = next_best(keep)
    min_len = int(round(L / 3)) + 2 * path[-1]
    skips = sorted((k for k in range(L) if ops[k] == SKIP), key=lambda k: -probs[k][SKIP])
    removed = set(skips[: max(L - min_len, 0)])
    for k in range(L):
        if ops[k] == SKIP and k not in removed:
            ops[k] = next_best(k)
    return ops, removed


def position_widths(ratios: list | None, path: list[int], width_choices: list[int], head_width: int) -> list[int]:
    """Width numerator of each cell's output: argmax ratio of the node it writes; head width at the end."""
    L = len(path)
    widths = []
    for k in range(L - 1):
        if ratios is None:
            widths.append(width_choices[-1])
            continue
        nxt = path[k + 1]
        widths.append(width_choices[int(np.argmax(np.asarray(ratios[nxt][k - WIDTH_OFFSET[nxt]])))])
    widths.append(head_width)
    return widths


def derive_branch(alphas: list, betas: list, ratios: list | None, layers: int, scale: int,
                  width_choices: list[int], head_width: int) -> dict:
    """One branch of the architecture JSON (``{"scale", "cells"}``) ending at ``scale`` (8, 16, 32)."""
    last = SCALES.index(scale)
    downs = downsample_positions(betas, layers, last)
    path = path_scales(layers, downs)
    ops, removed = select_ops(alphas, path, downs)
    widths = position_widths(ratios, path, width_choices, head_width)
    cells = [{"op": OP_NAMES[ops[k]], "scale": SCALES[path[k]], "down": k in downs, "width": widths[k]}
             for k in range(layers) if k not in removed]
    return {"scale": scale, "cells": cells}


def derive_arch(alphas: list, betas: list, ratios: list | None, branch_set: list[int], *, layers: int, F: int,
                width_base: int, width_choices: list[int], stem_width: int, head_width: int) -> dict:
    """The architecture JSON of one role: its branches in ``branch_set`` order."""
    branches = [derive_branch(alphas, betas, ratios, layers, s, width_choices, head_width) for s in branch_set]
    return {"F": F, "width_base": width_base, "stem_width": stem_width, "head_width": head_width, "branches": branches}
