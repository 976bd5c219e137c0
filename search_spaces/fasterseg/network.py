"""The plain network an architecture JSON describes (METHODS §5, "FasterSeg derived network").

Stem to 1/8, each branch's cells (cells shared between branches while their prefixes agree are computed
once), per-branch refinement to 1/8 (``8F·w_head`` channels each), fusion of the concatenated branches by a
1x1 ConvBNReLU that keeps their width (``2·8F·w_head`` for two branches), the head on that width, bilinear
to the input size. The 1/16 and 1/32 auxiliary heads run only in training mode, where the forward returns
``(logits, [aux16, aux32])``.
No supernet machinery: every conv has its final width and one BatchNorm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from terralite.errors import TerraLiteError
from terralite.search_spaces.fasterseg.arch import validate_arch
from terralite.search_spaces.fasterseg.config import cell_channels, stem_channels
from terralite.search_spaces.fasterseg.ops import FusionHead, Head, Refine16, Refine32, Stem, build_op


@dataclass(frozen=True)
class CellPlan:
    """One cell of a branch with its resolved channels."""

    op: str
    scale: int  # input scale (8, 16, 32)
    down: bool
    c_in: int
    c_out: int

    @property
    def out_scale(self) -> int:
        return self.scale * 2 if self.down else self.scale


@dataclass(frozen=True)
class BranchPlan:
    scale: int
    cells: tuple[CellPlan, ...]
    feature_channels: dict  # scale → channels of the branch's last feature at that scale


def plan_branches(arch: dict) -> tuple[tuple[int, int, int], list[BranchPlan]]:
    """Resolve the channels of every cell: ``(stem widths, [BranchPlan, ...])``."""
    F, base = arch["F"], arch["width_base"]
    stem = stem_channels(F, arch["stem_width"], base)
    plans = []
    for branch in arch["branches"]:
        c_in, cells, feats = stem[2], [], {8: stem[2]}
        for cell in branch["cells"]:
            out_scale = cell["scale"] * (2 if cell["down"] else 1)
            c_out = cell_channels(out_scale, F, cell["width"], base)
            cells.append(CellPlan(cell["op"], cell["scale"], cell["down"], c_in, c_out))
            feats[out_scale] = c_out
            c_in = c_out
        plans.append(BranchPlan(branch["scale"], tuple(cells), feats))
    return stem, plans


def share_cells(plans: list[BranchPlan]) -> tuple[list[CellPlan], list[list[int]]]:
    """Cells computed once: ``(unique cells, per-branch indices into them)``.

    A cell is identified by its prefix, so an equal prefix (same ops, widths and scales so far) means the
    same input and the same computation: branches share cells while they agree. A branch's last cell is
    its own even where another branch has the same cell: the original's grouping never merges a branch's
    last layer, and the parameter counts follow the original's.
    """
    unique: list[CellPlan] = []
    prefix_to_index: dict[tuple, int] = {}
    branch_ids = []
    for b, plan in enumerate(plans):
        ids, prefix = [], ()
        for n, cell in enumerate(plan.cells):
            prefix = prefix + (cell,)
            key = prefix if n < len(plan.cells) - 1 else prefix + (("end of branch", b),)
            if key not in prefix_to_index:
                prefix_to_index[key] = len(unique)
                unique.append(cell)
            ids.append(prefix_to_index[key])
        branch_ids.append(ids)
    return unique, branch_ids


class FasterSegNet(nn.Module):
    """A derived FasterSeg network; accepts any H, W divisible by 32 and ``in_channels`` bands."""

    def __init__(self, arch: dict, in_channels: int = 3, num_classes: int = 8):
        super().__init__()
        arch = validate_arch(arch)
        F, base, head_w = arch["F"], arch["width_base"], arch["head_width"]
        stem, plans = plan_branches(arch)
        self.stem = Stem(in_channels, stem)
        unique, self.branch_cells = share_cells(plans)
        self.cells = nn.ModuleList(build_op(c.op, c.c_in, c.c_out, 2 if c.down else 1) for c in unique)
        self.branch_out_scales = [[c.out_scale for c in plan.cells] for plan in plans]
        self.branch_scales = [plan.scale for plan in plans]
        c16h, c8h = cell_channels(16, F, head_w, base), cell_channels(8, F, head_w, base)
        self.refines = nn.ModuleList()
        for plan in plans:
            feats = plan.feature_channels
            if plan.scale == 32:
                self.refines.append(Refine32(feats[32], feats[16], feats[8], c16h, c8h))
            elif plan.scale == 16:
                self.refines.append(Refine16(feats[16], feats[8], c8h))
            else:
                self.refines.append(nn.Identity())
        # every branch reaches 1/8 with c8h channels (a 1/8 branch's last cell outputs the head width)
        self.fusion_head = FusionHead(len(plans) * c8h, num_classes)
        aux16 = sum(p.feature_channels[16] for p in plans if p.scale >= 16)
        aux32 = sum(p.feature_channels[32] for p in plans if p.scale == 32)
        self.aux16 = Head(aux16, num_classes) if aux16 else None
        self.aux32 = Head(aux32, num_classes) if aux32 else None

    def forward(self, x: torch.Tensor):
        size = (x.shape[-2], x.shape[-1])
        stem = self.stem(x)  # (B, C, H/8, W/8)
        computed: dict[int, torch.Tensor] = {}
        fused, feats16, feats32 = [], [], []
        for b, ids in enumerate(self.branch_cells):
            last = {8: stem}  # the branch's last feature at each scale
            h = stem
            for idx, out_scale in zip(ids, self.branch_out_scales[b]):
                if idx not in computed:
                    computed[idx] = self.cells[idx](h)
                h = computed[idx]
                last[out_scale] = h
            scale = self.branch_scales[b]
            if scale == 32:
                fused.append(self.refines[b](last[32], last[16], last[8]))
                feats32.append(last[32])
            elif scale == 16:
                fused.append(self.refines[b](last[16], last[8]))
            else:
                fused.append(last[8])
            if scale >= 16:
                feats16.append(last[16])
        logits = self.fusion_head(fused, size)
        if not self.training:
            return logits
        aux = []
        if self.aux16 is not None:
            aux.append(self.aux16(torch.cat(feats16, dim=1)))
        if self.aux32 is not None:
            aux.append(self.aux32(torch.cat(feats32, dim=1)))
        return logits, aux

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As :meth:`nn.Module.load_state_dict`, refusing with one clear message the weights of a network
        built before the fusion fix (its fusion conv halved the concatenated width: ``C → C/2`` where this
        network has ``C → C``; a pruned network's own widths are compared, not assumed square)."""
        fusion = state_dict.get("fusion_head.fusion.0.weight")
        own = self.fusion_head.fusion[0].weight.shape
        if fusion is not None and fusion.shape[1] == own[1] and 2 * fusion.shape[0] == own[0]:
            c_out, c_in = fusion.shape[:2]
            raise TerraLiteError(
                f"these FasterSeg weights come from a network built before the fusion fix (fusion conv {c_in} → "
                f"{c_out} channels; the network is now built as the original, {c_in} → {c_in}, with the head on "
                f"{c_in}): they cannot be loaded. Train the architecture again (the checkpoint's spec, or its "
                "JSON) with `terralite train --model ARCH.json`")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def build(arch: dict, in_channels: int = 3, num_classes: int = 8) -> FasterSegNet:
    """The plain network of an architecture dict (validated)."""
    return FasterSegNet(arch, in_channels, num_classes)


def build_from_spec(spec: dict) -> FasterSegNet:
    """Model-kind builder for ``{"kind": "fasterseg", "arch": {...}, "in_channels", "num_classes"}``."""
    return FasterSegNet(validate_arch(spec.get("arch"), f"fasterseg spec {spec.get('label', '')}".rstrip() + " (field 'arch')"),
                        spec.get("in_channels", 3), spec.get("num_classes", 8))
