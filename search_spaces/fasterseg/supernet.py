"""The FasterSeg supernet: a lattice of cells over 1/8, 1/16, 1/32 with teacher and student parameters.

Layer ``i`` holds a cell at each scale ``j`` with ``j <= min(i, 2)`` (1/8 from layer 0, 1/16 from layer 1,
1/32 from layer 2). A cell applies one mixed operator that keeps its scale and, below 1/32 and before the
last layer, a stride-2 mixed operator (same α) that feeds the next-coarser scale. A cell at 1/16 or 1/32
runs on both its inputs — "down" (the finer scale's stride-2 output) and "keep" (same scale, previous
layer) — and mixes the results with a 2-way softmax β (column 0 = down, 1 = keep, as the official code).

Architecture parameters per role (``teacher``, ``student``):
``alpha_j`` (rows = cells of scale j, i.e. layers j..L-1; columns = ``OP_NAMES``), ``beta_j`` for j = 1, 2
(rows = layers j+1..L-1) and, for the student only, ``ratio_j`` — width logits of the feature node
(layer i, scale j), rows = layers ``WIDTH_OFFSET[j]``..L-2 (the last layer outputs the head width).
The keep output of cell (i, j) and the down output of cell (i, j-1) are the same node and share a width.

The teacher runs at full width; the student's widths are sampled by hard straight-through Gumbel-softmax
(or fixed to max / min / random / argmax). Cells are shared; each role has its own stem, refinements and heads.
Outputs (all at 1/8): one head per final scale (``"8"``, ``"16"``, ``"32"``) and one per branch set
(``"32+16"`` ...), each supervised during search. A branch set's head works on the concatenated width of
its branches (``len(set)·8F·w_head``), as the original supernet's ``head02``/``head12``; like them it has no
fusion conv (the derived network's fusion keeps that width, so the head sees the same width in both).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from terralite.search_spaces.fasterseg.config import SCALES, FasterSegSpaceConfig, cell_channels, stem_channels
from terralite.search_spaces.fasterseg.ops import OP_NAMES, Head, Refine16, Refine32, Stem
from terralite.search_spaces.fasterseg.slimmable import MixedOp

ROLES = ("teacher", "student")
WIDTH_MODES = ("gumbel", "argmax", "max", "min", "random")
WIDTH_OFFSET = (0, 0, 1)  # first layer at which a node of scale j exists (1/16 from the down of layer 0)


def branch_key(branch_set: list[int]) -> str:
    return "+".join(str(s) for s in branch_set)


class FasterSegSupernet(nn.Module):
    """Supernet of a :class:`FasterSegSpaceConfig`; see the module docstring for the layout."""

    def __init__(self, cfg: FasterSegSpaceConfig, in_channels: int = 3, num_classes: int = 8):
        super().__init__()
        self.cfg = cfg.validate()
        L, F_, base = cfg.layers, cfg.F, cfg.width_base
        self.in_channels, self.num_classes = in_channels, num_classes
        # channel choices of a node at scale j, one per width numerator (may repeat for small F)
        self.node_widths = [[cell_channels(s, F_, w, base) for w in cfg.widths] for s in SCALES]
        self.head_width = {"teacher": base, "student": cfg.student_head_width}
        self.stem_width = {"teacher": base, "student": cfg.student_stem_width}
        head_ch = {r: [cell_channels(s, F_, self.head_width[r], base) for s in SCALES] for r in ROLES}
        stem_out = {r: stem_channels(F_, self.stem_width[r], base)[2] for r in ROLES}

        self.cells = nn.ModuleList()
        for i in range(L):
            layer = nn.ModuleDict()
            for j in range(min(i, 2) + 1):
                in_widths = list(self.node_widths[j]) + ([stem_out[r] for r in ROLES] if i == 0 else [])
                keep_out = [head_ch[r][j] for r in ROLES] if i == L - 1 else list(self.node_widths[j])
                layer[f"keep{j}"] = MixedOp(max(in_widths), keep_out, 1)
                if j < 2 and i < L - 1:
                    layer[f"down{j}"] = MixedOp(max(in_widths), list(self.node_widths[j + 1]), 2)
            self.cells.append(layer)

        self.stems = nn.ModuleDict({r: Stem(in_channels, stem_channels(F_, self.stem_width[r], base)) for r in ROLES})
        self.refine16 = nn.ModuleDict()
        self.refine32 = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        for r in ROLES:
            c8h, c16h, c32h = head_ch[r]
            self.refine16[r] = Refine16(c16h, c8h, c8h)
            self.refine32[r] = Refine32(c32h, c16h, c8h, c16h, c8h)
            heads = nn.ModuleDict({str(s): Head(c8h, num_classes) for s in SCALES})
            for bs in cfg.branch_sets:
                heads[branch_key(bs)] = Head(len(bs) * c8h, num_classes)
            self.heads[r] = heads

        self.arch = nn.ParameterDict()
        n_ops, n_w = len(OP_NAMES), len(cfg.widths)
        for r in ROLES:
            for j in range(3):
                self.arch[f"{r}_alpha_{j}"] = nn.Parameter(1e-3 * torch.ones(L - j, n_ops))
            for j in (1, 2):
                self.arch[f"{r}_beta_{j}"] = nn.Parameter(1e-3 * torch.ones(L - j - 1, 2))
        for j in range(3):
            self.arch[f"student_ratio_{j}"] = nn.Parameter(1e-3 * torch.ones(L - 1 - WIDTH_OFFSET[j], n_w))

    # -- parameters -------------------------------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.arch.values())

    def weight_parameters(self) -> list[nn.Parameter]:
        arch_ids = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch_ids]

    def alphas(self, role: str) -> list[torch.Tensor]:
        return [self.arch[f"{role}_alpha_{j}"] for j in range(3)]

    def betas(self, role: str) -> list[torch.Tensor | None]:
        return [None, self.arch[f"{role}_beta_1"], self.arch[f"{role}_beta_2"]]

    def ratios(self) -> list[torch.Tensor]:
        return [self.arch[f"student_ratio_{j}"] for j in range(3)]

    # -- widths -----------------------------------------------------------------------------------
    def _node_width(self, role: str, i: int, j: int, mode: str) -> tuple[int, torch.Tensor | float]:
        """(channels, score) of node (layer i, scale j); the score carries the width gradient."""
        L = self.cfg.layers
        if i == L - 1:
            return cell_channels(SCALES[j], self.cfg.F, self.head_width[role], self.cfg.width_base), 1.0
        choices = self.node_widths[j]
        if role == "teacher" or mode == "max":
            return choices[-1], 1.0
        if mode == "min":
            return choices[0], 1.0
        if mode == "random":
            return choices[int(torch.randint(len(choices), ()).item())], 1.0
        logits = self.ratios()[j][i - WIDTH_OFFSET[j]]
        if mode == "argmax":
            return choices[int(logits.argmax())], 1.0
        if mode != "gumbel":
            raise ValueError(f"unknown width mode {mode!r}; valid: {', '.join(WIDTH_MODES)}")
        hard = F.gumbel_softmax(logits, tau=1.0, hard=True)  # one-hot forward, soft gradient
        k = int(hard.argmax())
        return choices[k], hard[k]

    # -- forward ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, role: str = "student", width_mode: str = "gumbel") -> dict[str, torch.Tensor]:
        """Logits at 1/8 resolution for every head: ``{"8", "16", "32", "<branch set>": (B, K, H/8, W/8)}``."""
        L = self.cfg.layers
        alphas = [F.softmax(a, dim=-1) for a in self.alphas(role)]
        betas = [None] + [F.softmax(b, dim=-1) for b in self.betas(role)[1:]]
        keep_prev: dict[int, torch.Tensor] = {0: self.stems[role](x)}  # node outputs of the previous layer
        down_prev: dict[int, torch.Tensor] = {}  # down outputs of the previous layer, keyed by source scale
        for i in range(L):
            keep, down = {}, {}
            widths = {j: self._node_width(role, i, j, width_mode) for j in range(min(i + 1, 2) + 1)}
            for j in range(min(i, 2) + 1):
                cell = self.cells[i]
                alpha = alphas[j][i - j]
                if j == 0:
                    inputs = [(1.0, keep_prev[0])]
                elif i == j:
                    inputs = [(1.0, down_prev[j - 1])]
                else:
                    beta = betas[j][i - j - 1]
                    inputs = [(beta[0], down_prev[j - 1]), (beta[1], keep_prev[j])]
                c_keep, s_keep = widths[j]
                keep[j] = s_keep * sum(w * cell[f"keep{j}"](h, alpha, c_keep) for w, h in inputs)
                if f"down{j}" in cell:
                    c_down, s_down = widths[j + 1]
                    down[j] = s_down * sum(w * cell[f"down{j}"](h, alpha, c_down) for w, h in inputs)
            keep_prev, down_prev = keep, down
        out8, out16, out32 = keep_prev[0], keep_prev[1], keep_prev[2]
        ref = {8: out8, 16: self.refine16[role](out16, out8), 32: self.refine32[role](out32, out16, out8)}
        heads = self.heads[role]
        preds = {str(s): heads[str(s)](ref[s]) for s in SCALES}
        for bs in self.cfg.branch_sets:
            preds[branch_key(bs)] = heads[branch_key(bs)](torch.cat([ref[s] for s in bs], dim=1))
        return preds
