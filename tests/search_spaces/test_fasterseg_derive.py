"""FasterSeg derivation rules (METHODS §5), one rule per test, on hand-made α/β/ratio arrays.

Each test works out the correct decoding in its comments. Conventions (search_spaces/fasterseg/derive.py):
β_j rows are layers j+1..L-1, column 0 = down; a row's down probability is sigmoid(down − keep) for a
two-column softmax, so a row with logits (x, 0) has down probability σ(x) (σ(0) = 0.5, σ(1) = 0.731).
α_s rows are the cells of scale s (layers s..L-1); ratio_j rows are the nodes of scale j (layers
WIDTH_OFFSET[j]..L-2). Op columns: skip, conv, conv_2x, zoomed_conv, zoomed_conv_2x.
"""

import numpy as np
import pytest

from terralite.search_spaces.fasterseg.derive import (DOWN, SKIP, derive_branch, downsample_positions, path_scales,
                                                      position_widths, select_ops)
from terralite.search_spaces.fasterseg.ops import OP_NAMES
from terralite.search_spaces.fasterseg.space import FasterSegSearchSpace

CONV, CONV2X, ZOOM, ZOOM2X = (OP_NAMES.index(n) for n in ("conv", "conv_2x", "zoomed_conv", "zoomed_conv_2x"))
WIDTHS = [4, 6, 8, 10, 12]


def _betas(L: int, b1_down: dict | None = None, b2_down: dict | None = None) -> list:
    """β logits: (down, keep) = (x, 0) for the given rows, (0, 0) elsewhere."""
    b1, b2 = np.zeros((L - 2, 2)), np.zeros((L - 3, 2))
    for row, x in (b1_down or {}).items():
        b1[row, DOWN] = x
    for row, x in (b2_down or {}).items():
        b2[row, DOWN] = x
    return [None, b1, b2]


def _alphas(L: int, fill: int = CONV) -> list:
    """α logits preferring ``fill`` everywhere (logit 1, the rest 0)."""
    alphas = [np.zeros((L - s, len(OP_NAMES))) for s in range(3)]
    for a in alphas:
        a[:, fill] = 1.0
    return alphas


# -- paths ------------------------------------------------------------------------------------------------
def test_16_branch_downsample_one_after_the_argmax_row():
    L = 8  # β₁ has rows 0..5; β₁[1:-1] = rows 1..4
    # row 3 has the largest down probability among rows 1..4: row 3 is the 1/16 cell at layer 5 reading the
    # stride-2 output of layer 4, so the downsample is the cell at layer 4. (The original puts it at 3.)
    assert downsample_positions(_betas(L, {3: 2.0}), L, 1) == [4]
    # rows 0 and 5 lie outside β₁[1:-1]: even a much larger down probability there changes nothing
    assert downsample_positions(_betas(L, {0: 9.0, 3: 2.0, 5: 9.0}), L, 1) == [4]
    # a tie between rows 2 and 4 goes to the earliest: row 2 → downsample at 3
    assert downsample_positions(_betas(L, {2: 2.0, 4: 2.0}), L, 1) == [3]
    assert downsample_positions(_betas(L), L, 0) == []  # a 1/8 branch never downsamples


def test_32_branch_pair_in_the_original_range():
    L = 10  # β₁ rows 0..7, β₂ rows 0..6; the range is 1 ≤ i ≤ j-2, j ≤ len(β₂)-2 = 5
    # the largest down probabilities sit outside the range: β₁ row 0 (i ≥ 1) and β₂ row 6 (j ≤ 5);
    # inside it, β₁[2] = β₂[5] = σ(1) = 0.731 and everything else 0.5:
    #   (i, j) = (2, 5): 0.731·0.731 = 0.534, the best (i = 2 ≤ 5-2); any other pair ≤ 0.731·0.5 = 0.366
    # → downsamples at i+1 = 3 and j+2 = 7 (the old range i ≥ 0, j ≤ 6 would have taken (0, 6): 1 and 8)
    betas = _betas(L, {0: 5.0, 2: 1.0}, {6: 5.0, 5: 1.0})
    assert downsample_positions(betas, L, 2) == [3, 7]
    assert path_scales(L, [3, 7]) == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]


def test_32_branch_pair_needs_i_at_most_j_minus_2_and_keeps_the_first_best():
    L = 10
    # β₁[4] = σ(3) = 0.953 would pair best with β₂[5] = 0.731, but i = 4 needs j ≥ 6 > 5: never in range.
    # In range every β₁ row is 0.5, so the best products are 0.5·0.731 = 0.366 at j = 5 for i = 1, 2, 3.
    # Scanning j outer, i inner with "strictly greater": (1, 3) 0.25 first, then (1, 5) 0.366; (2, 5) and
    # (3, 5) only equal it → (1, 5): downsamples at 2 and 7.
    betas = _betas(L, {4: 3.0}, {5: 1.0})
    assert downsample_positions(betas, L, 2) == [2, 7]


def test_32_branch_pair_defaults_like_the_original_below_8_layers():
    # L = 6: j ≤ len(β₂)-2 = 1 and i ≥ 1, i ≤ j-2 leave no pair; the original keeps its start (0, 1)
    # → downsamples at 1 and 3, whatever β says
    assert downsample_positions(_betas(6, {2: 4.0}, {2: 4.0}), 6, 2) == [1, 3]


# -- ops and widths ---------------------------------------------------------------------------------------
def test_op_at_position_k_reads_alpha_of_its_scale_at_row_k_minus_s():
    L = 6
    downs = [2]  # cell 2 downsamples: scales [0, 0, 0, 1, 1, 1]
    path = path_scales(L, downs)
    assert path == [0, 0, 0, 1, 1, 1]
    alphas = _alphas(L, ZOOM2X)
    alphas[0][:3] = 0.0
    alphas[0][[0, 1, 2], [CONV, CONV2X, ZOOM]] = 1.0  # α₀ rows 0..2: positions 0..2 (scale 0: row = k)
    alphas[1][:] = 0.0
    alphas[1][:, CONV] = 1.0  # rows 0, 1 would be read by a wrong offset
    alphas[1][[2, 3, 4], [CONV2X, ZOOM, ZOOM2X]] = 2.0  # positions 3, 4, 5 at scale 1 read α₁[k-1] = rows 2, 3, 4
    ops, removed = select_ops(alphas, path, downs)
    assert ops == [CONV, CONV2X, ZOOM, CONV2X, ZOOM, ZOOM2X] and removed == set()


def test_width_reads_the_ratio_of_the_next_positions_scale():
    L = 6
    path = path_scales(L, [2])  # [0, 0, 0, 1, 1, 1]
    ratios = [np.zeros((L - 1, 5)), np.zeros((L - 1, 5)), np.zeros((L - 2, 5))]
    # cell k writes node (k+1, path[k+1]): cells 0, 1 → ratio₀ rows 0, 1; the down cell 2 writes a 1/16
    # node → ratio₁ row 2 (not ratio₀ row 2); cells 3, 4 → ratio₁ rows 3, 4; cell 5 is the last: head width
    ratios[0][0, 1] = ratios[0][1, 2] = 1.0        # widths 6, 8
    ratios[0][2, 0] = 5.0                          # a decoy: the down cell must not read its own scale
    ratios[1][2, 4] = ratios[1][3, 3] = ratios[1][4, 0] = 1.0  # widths 12, 10, 4
    assert position_widths(ratios, path, WIDTHS) == [6, 8, 12, 10, 4]
    assert position_widths(None, path, WIDTHS) == [12] * 5  # no ratios: full width


# -- skip rules -------------------------------------------------------------------------------------------
def test_min_len_bounds_the_removals_most_likely_first_last_position_included():
    L = 9  # a 1/8 branch: min_len = round(9/3) + 2·0 = 3 → at most 6 of the 9 cells removed
    path = path_scales(L, [])
    alphas = _alphas(L, CONV)
    alphas[0][:, CONV] = 0.1  # conv is every position's next best
    alphas[0][:, SKIP] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.5, 7.0, 8.0]  # skip is every position's argmax
    # ranked by skip probability: 8, 7, 5, 4, 3, 2 | 1, 0, 6 → the first six removed (the last position,
    # 8, among them); 0, 1, 6 stay with their next-best op (conv). No segment rule: no downsampling.
    ops, removed = select_ops(alphas, path, [])
    assert removed == {2, 3, 4, 5, 7, 8}
    assert [ops[k] for k in (0, 1, 6)] == [CONV] * 3
    # the branch JSON: the last position removed, so the cell at 6 ends the branch with the head width
    ratios = [np.zeros((L - 1, 5)), np.zeros((L - 1, 5)), np.zeros((L - 2, 5))]
    ratios[0][:, 1] = 1.0  # 6/12 everywhere
    branch = derive_branch(alphas, _betas(L), ratios, L, 8, WIDTHS, head_width=8)
    assert branch == {"scale": 8, "cells": [{"op": "conv", "scale": 8, "down": False, "width": 6},
                                            {"op": "conv", "scale": 8, "down": False, "width": 6},
                                            {"op": "conv", "scale": 8, "down": False, "width": 8}]}


def test_all_skip_segment_keeps_its_least_likely_skip_and_down_cells_keep_a_real_op():
    L = 8  # a 1/16 branch: β₁ row 2 → downsample at 3; scales [0, 0, 0, 0, 1, 1, 1, 1]
    downs = downsample_positions(_betas(L, {2: 3.0}), L, 1)
    assert downs == [3]
    path = path_scales(L, downs)
    alphas = _alphas(L, CONV)
    alphas[0][3, SKIP] = 9.0  # the downsampling cell prefers skip: not removable, it takes conv
    alphas[1][:, CONV2X] = 0.5  # next best at 1/16
    alphas[1][3:7, SKIP] = [3.0, 1.2, 2.0, 4.0]  # positions 4..7 (α₁ rows k-1): the segment after the down
    # The segment 4..7 is all skip: its least likely skip (position 5, logit 1.2) becomes a real op (conv,
    # logit 1 > conv_2x 0.5). min_len = round(8/3) + 2·1 = 5 → at most 3 removed; the candidates ranked
    # by skip probability: 7, 4, 6, 5 → 7, 4, 6 removed. Position 7 is the last: the branch ends at 5.
    ops, removed = select_ops(alphas, path, downs)
    assert removed == {4, 6, 7}
    assert ops[3] == CONV and ops[5] == CONV
    branch = derive_branch(alphas, _betas(L, {2: 3.0}), None, L, 16, WIDTHS, head_width=8)
    assert [(c["op"], c["scale"], c["down"], c["width"]) for c in branch["cells"]] == [
        ("conv", 8, False, 12), ("conv", 8, False, 12), ("conv", 8, False, 12), ("conv", 8, True, 12),
        ("conv", 16, False, 8)]


def test_turned_skip_keeps_its_place_in_the_ranking_as_in_the_original():
    L = 8  # a 1/16 branch with β₁ row 4 → downsample at 5; min_len = 5 → 3 removal slots
    downs = downsample_positions(_betas(L, {4: 3.0}), L, 1)
    assert downs == [5]
    path = path_scales(L, downs)  # [0, 0, 0, 0, 0, 0, 1, 1]
    alphas = _alphas(L, CONV)
    alphas[0][[1, 2], SKIP] = [1.5, 1.4]  # skip candidates at 1/8 (argmax over conv's 1)
    alphas[1][[5, 6], SKIP] = [2.0, 3.0]  # positions 6, 7: the segment after the down, all skip
    # The segment 6..7 turns its least likely skip, position 6, into conv. The ranking is the original's,
    # made over the candidates found before that: 7 (3.0), 6 (2.0), 1 (1.5) | 2 (1.4). The three slots
    # go to 7, 6, 1; 6 is no longer a skip and stays, so only 7 and 1 are removed; 2 takes conv.
    ops, removed = select_ops(alphas, path, downs)
    assert removed == {1, 7}
    assert ops[2] == CONV and ops[6] == CONV


def test_cells_before_the_first_downsample_may_all_go():
    L = 8  # a 1/16 branch, downsample at 3 (β₁ row 2)
    downs = [3]
    path = path_scales(L, downs)
    alphas = _alphas(L, CONV)
    alphas[0][[0, 1, 2], SKIP] = [4.0, 5.0, 6.0]
    # The original checks only the segments after each downsampling: 0..2 may all be removed (3 slots:
    # min_len = 5), and the downsampling cell 3 then reads the stem.
    _, removed = select_ops(alphas, path, downs)
    assert removed == {0, 1, 2}
    branch = derive_branch(alphas, _betas(L, {2: 3.0}), None, L, 16, WIDTHS, head_width=8)
    assert [c["down"] for c in branch["cells"]] == [True, False, False, False, False]


# -- roles ------------------------------------------------------------------------------------------------
@pytest.fixture
def skip_everywhere():
    """Architecture parameters of the tiny preset whose every α row has skip as argmax, conv_2x next."""
    space = FasterSegSearchSpace.from_preset("tiny")
    L = space.cfg.layers
    alphas = _alphas(L, CONV2X)
    for a in alphas:
        a[:, SKIP] = 5.0
    ratios = [np.zeros((L - 1, 5)), np.zeros((L - 1, 5)), np.zeros((L - 2, 5))]
    return space, alphas, _betas(L, {2: 2.0}), ratios


def test_teacher_ignores_skip_student_removes(skip_everywhere):
    space, alphas, betas, ratios = skip_everywhere
    L = space.cfg.layers
    # teacher (ignore_skip): skip is never chosen, so no cell is removed: every branch has all L cells,
    # each with the next-best op conv_2x
    teacher = space.arch_from_params(alphas, betas, None, [32, 16], role="teacher")
    for branch in teacher["branches"]:
        assert len(branch["cells"]) == L
        assert {c["op"] for c in branch["cells"]} == {"conv_2x"}
    # the student decodes the same α with the skip rules: L - min_len cells go from each branch
    # (1/32: min_len = round(6/3) + 4 = 6 → none; 1/16: min_len = 2 + 2 = 4 → two)
    student = space.arch_from_params(alphas, betas, ratios, [32, 16], role="student")
    assert [len(b["cells"]) for b in student["branches"]] == [6, 4]
    assert "skip" not in {c["op"] for b in student["branches"] for c in b["cells"]}
