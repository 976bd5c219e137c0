"""Derivation of a FasterSeg architecture from architecture parameters (METHODS §2 and §5).

Per branch: the downsampling positions come from β (one for a 1/16 branch; for a 1/32 branch the ordered
pair maximising the product of the two down probabilities), the ops from α with the skip rules, the widths
from the ratio logits of the node each cell writes. The parameters are plain arrays here, so the rules can be
tested without a supernet: ``alphas[j]`` (rows = layers j..L-1), ``betas[j]`` for j = 1, 2 (rows = layers
j+1..L-1, column 0 = down), ``ratios[j]`` (rows = layers ``WIDTH_OFFSET[j]``..L-2) or ``None`` (full width).

The rules are the original decoding's (``network_metas`` of the official inference code), with one
deliberate difference:

- **The 1/16 branch's downsample sits one layer later than the original puts it.** Row ``r`` of β₁ is the
  choice of the 1/16 cell at layer ``r+2`` between the 1/8 cell at layer ``r+1``'s stride-2 output ("down")
  and the 1/16 cell at layer ``r+1`` ("keep"), in the original supernet as in ours; so a large
  ``β₁[r, down]`` asks for the downsample at layer ``r+1``. The original's 1/16 decoding places it at
  ``r`` (``argmax(β₁[1:-1]) + 1`` used as a layer, which is the row index, not the row's downsampling
  layer), while its 1/32 decoding reads the same rows correctly (``i+1``, ``j+2``). We place it at
  ``r+1``: the network then contains the downsample the search weighed, and the 1/16 and 1/32 decodings
  read β₁ alike. (Rows 1..L-4 are searched, as the original's ``β₁[1:-1]``, so downsamples land at
  layers 2..L-3 instead of 1..L-4.)

Everything else follows the original, including its corner cases: the 1/32 pair's range
(1 ≤ i ≤ j-2, j ≤ len(β₂)-2; for fewer than 8 layers that range is empty and the pair is the original's
default (0, 1)); the all-skip check on each segment that follows a downsampling (not the cells before the
first one, nor a 1/8 branch); a skip at the branch's last position as a removal candidate; the ranking of
the candidates made before an all-skip segment's least-likely skip is turned into a real op. The teacher
is decoded with ``ignore_skip`` (no skip chosen, no cell removed). Not carried over, being side effects
rather than rules: the original decodes the 1/8, 1/16 and 1/32 branches one after another from the same
tensors and modifies them in place (β goes through softmax again for each branch; skip logits set to −inf
while decoding one branch stay so for the next); here every branch is decoded from the same parameters.
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

    1/16: one downsample at ``r + 1`` for the row ``r`` of β₁[1:-1] (rows 1..L-4) with the largest down
    probability, ties to the earliest (row r of β₁ is the cell at layer r+2 reading the down output of
    layer r+1; the original places it at r, see the module docstring).
    1/32: the ordered pair (i, j), 1 ≤ i ≤ j-2, j ≤ len(β₂)-2, maximising β₁[i, down]·β₂[j, down] (a
    later pair replaces the best only when strictly greater): downsamples at i+1, j+2. With fewer than 8
    layers no pair is in that range and, as in the original, the pair is (0, 1).
    """
    if last == 0:
        return []
    b1 = _softmax(np.asarray(betas[1], dtype=np.float64))
    if last == 1:
        rows = range(1, len(b1) - 1)  # β₁[1:-1]
        r = max(rows, key=lambda k: (b1[k, DOWN], -k))  # ties → earliest
        return [r + 1]
    b2 = _softmax(np.asarray(betas[2], dtype=np.float64))
    best, best_ij = 0.0, (0, 1)  # the original's start: kept only when the range is empty
    for j in range(len(b2) - 1):  # j ≤ len(β₂) - 2
        for i in range(1, j - 1):  # 1 ≤ i ≤ j - 2
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


def select_ops(alphas: list, path: list[int], downs: list[int], ignore_skip: bool = False) -> tuple[list[int], set[int]]:
    """Ops per position and the positions whose skip cell is removed (METHODS §5 skip rules).

    The op at position k (scale s) is argmax α_s[k−s]. A skip may be removed where the cell keeps its scale
    (a downsampling cell's skip takes the next-best op), the branch's last position included (removing it
    ends the branch one cell earlier). In every segment that follows a downsampling (up to the next one or
    the end) the cells may not all be skips: the least likely skip there (the last on ties) becomes a real
    op. At most L − min_len candidates are removed, min_len = round(L/3) + 2·last, the most likely skips
    first (earlier on ties), ranked over the candidates as found before the segment rule, as the original
    does (a turned skip that ranks among them takes a removal slot and stays). Any skip not removed takes
    the next-best op. ``ignore_skip`` (the teacher): skip is never chosen, so nothing is removed.
    """
    L = len(path)
    probs = [_softmax(np.asarray(alphas[path[k]][k - path[k]], dtype=np.float64)) for k in range(L)]
    if ignore_skip:
        return [int(np.argmax(p[1:])) + 1 for p in probs], set()
    ops = [int(np.argmax(p)) for p in probs]

    def next_best(k: int) -> int:
        return int(np.argmax(probs[k][1:])) + 1

    down_set = set(downs)
    candidates = [k for k in range(L) if ops[k] == SKIP and k not in down_set]  # original: last or same next scale
    bounds = sorted(downs) + [L]
    for a, b in zip(bounds[:-1], bounds[1:]):  # the segments after each downsampling (original: pos_downs pairs)
        segment = list(range(a + 1, b))
        if segment and all(k in candidates for k in segment):
            keep = min(reversed(segment), key=lambda k: probs[k][SKIP])  # least likely; the last on ties
            ops[keep] = next_best(keep)
    min_len = int(round(L / 3)) + 2 * path[-1]
    ranked = sorted(candidates, key=lambda k: -probs[k][SKIP])[: max(L - min_len, 0)]
    removed = {k for k in ranked if ops[k] == SKIP}
    for k in range(L):
        if ops[k] == SKIP and k not in removed:
            ops[k] = next_best(k)
    return ops, removed


def position_widths(ratios: list | None, path: list[int], width_choices: list[int]) -> list[int]:
    """Width numerator of each cell's output, the last position's excepted (it outputs the head width):
    the argmax ratio of the node it writes, i.e. of the next position's scale (original ``path2widths``)."""
    widths = []
    for k in range(len(path) - 1):
        if ratios is None:
            widths.append(width_choices[-1])
            continue
        nxt = path[k + 1]
        widths.append(width_choices[int(np.argmax(np.asarray(ratios[nxt][k - WIDTH_OFFSET[nxt]])))])
    return widths


def derive_branch(alphas: list, betas: list, ratios: list | None, layers: int, scale: int,
                  width_choices: list[int], head_width: int, ignore_skip: bool = False) -> dict:
    """One branch of the architecture JSON (``{"scale", "cells"}``) ending at ``scale`` (8, 16, 32).

    Removed cells drop out with their widths; the branch's last kept cell outputs the head width (when
    the last position is removed, the cell before it becomes the last one).
    """
    last = SCALES.index(scale)
    downs = downsample_positions(betas, layers, last)
    path = path_scales(layers, downs)
    ops, removed = select_ops(alphas, path, downs, ignore_skip)
    widths = position_widths(ratios, path, width_choices)
    kept = [k for k in range(layers) if k not in removed]
    cells = [{"op": OP_NAMES[ops[k]], "scale": SCALES[path[k]], "down": k in downs,
              "width": head_width if k == kept[-1] else widths[k]} for k in kept]
    return {"scale": scale, "cells": cells}


def derive_arch(alphas: list, betas: list, ratios: list | None, branch_set: list[int], *, layers: int, F: int,
                width_base: int, width_choices: list[int], stem_width: int, head_width: int,
                ignore_skip: bool = False) -> dict:
    """The architecture JSON of one role: its branches in ``branch_set`` order (``ignore_skip`` for the teacher)."""
    branches = [derive_branch(alphas, betas, ratios, layers, s, width_choices, head_width, ignore_skip) for s in branch_set]
    return {"F": F, "width_base": width_base, "stem_width": stem_width, "head_width": head_width, "branches": branches}
