"""An architecture in our JSON has the parameter and MAC counts the original construction gives (METHODS §5).

The reference below is written from METHODS §5 and the original inference network's construction rules
(``num_filters = round(scale·F·width)``, the stem, cells grouped across branches while they agree, the
refinements sized by the channels of each branch's last 1/16 and 1/8 features, the fusion conv that keeps
the concatenated width, the head) layer by layer, without the suite's network, plan or cost code. MACs are
counted in fvcore's conventions (conv ``Cin·k²·Cout`` per output pixel, eval BN 2 per element, bilinear
resize 4 per output element), so the comparison with fvcore on the built network is like for like.
"""

import numpy as np
import pytest
import torch

from terralite.benchmark.profiler import count_params, fvcore_macs
from terralite.search_spaces.fasterseg.space import FasterSegSearchSpace

CLASSES = 8


class _Count:
    def __init__(self):
        self.params = 0
        self.macs = 0

    def conv(self, cin, cout, k, h, bn=True, bias=False):
        self.params += cin * cout * k * k + (cout if bias else 0) + (2 * cout if bn else 0)
        self.macs += cin * cout * k * k * h * h + (2 * cout * h * h if bn else 0)

    def resize(self, c, h):
        self.macs += 4 * c * h * h


def _op(t: _Count, name: str, cin: int, cout: int, down: int, h: int) -> None:
    """One cell of the original's ops (METHODS §5) on an ``h x h`` input."""
    if name == "conv":
        t.conv(cin, cout, 3, h // (1 + down))
    elif name == "conv_2x":
        t.conv(cin, cout, 3, h // (1 + down))
        t.conv(cout, cout, 3, h // (1 + down))
    else:  # zoomed: resize to half, conv(s) there, resize back only at stride 1
        t.resize(cin, h // 2)
        t.conv(cin, cout, 3, h // 2)
        if name == "zoomed_conv_2x":
            t.conv(cout, cout, 3, h // 2)
        if not down:
            t.resize(cout, h)


def reference_counts(arch: dict, size: int, in_channels: int = 3) -> dict:
    F, base = arch["F"], arch["width_base"]
    stem_w, head_w = arch["stem_width"] / base, arch["head_width"] / base

    def nf(scale, width):  # the original's num_filters
        return int(np.round(scale * F * width))

    # the original's per-branch metas: ops, path (scale index per cell), downs, widths (all cells but the last)
    ops = [[c["op"] for c in b["cells"]] for b in arch["branches"]]
    paths = [[{8: 0, 16: 1, 32: 2}[c["scale"]] for c in b["cells"]] for b in arch["branches"]]
    downs = [[int(c["down"]) for c in b["cells"]] for b in arch["branches"]]
    widths = [[c["width"] / base for c in b["cells"][:-1]] for b in arch["branches"]]
    lasts = [{8: 0, 16: 1, 32: 2}[b["scale"]] for b in arch["branches"]]
    nb = len(lasts)

    t = _Count()
    # stem: ConvBNReLU s2, two two-conv blocks s2
    c1, c2, c3 = nf(2, stem_w) * 2, nf(4, stem_w) * 2, nf(8, stem_w)
    t.conv(in_channels, c1, 3, size // 2)
    t.conv(c1, c2, 3, size // 4)
    t.conv(c2, c2, 3, size // 4)
    t.conv(c2, c3, 3, size // 8)
    t.conv(c3, c3, 3, size // 8)

    # cells, grouped as the original's get_branch_groups_cells: branches i, j share layer l while neither
    # ends there and they agree on the next scale, the op and the width, at every layer so far
    ch_16, ch_8 = {}, {}
    connected = np.ones((nb, nb))
    for l in range(max(len(p) for p in paths)):
        for i in range(nb):
            for j in range(i + 1, nb):
                if (len(paths[i]) <= l + 1 or len(paths[j]) <= l + 1 or paths[i][l + 1] != paths[j][l + 1]
                        or ops[i][l] != ops[j][l] or widths[i][l] != widths[j][l]):
                    connected[i, j] = connected[j, i] = 0
        groups = []
        for b in range(nb):
            if len(paths[b]) < l + 1:
                continue
            for g in groups:
                if connected[g[0], b]:
                    g.append(b)
                    break
            else:
                groups.append([b])
        for g in groups:
            b = g[0]
            scale, down = 2 ** (paths[b][l] + 3), downs[b][l]
            cin = nf(scale, stem_w) if l == 0 else nf(scale, widths[b][l - 1])
            cout = nf(scale, head_w) if l == len(paths[b]) - 1 else nf(scale * (down + 1), widths[b][l])
            _op(t, ops[b][l], cin, cout, down, size // scale)
            for member in g:  # the channels of each branch's last 1/16 and 1/8 features: a down cell's input
                if down and scale == 16:
                    ch_16[member] = cin
                if down and scale == 8:
                    ch_8[member] = cin

    # refinements to 1/8, fusion keeping the concatenated width, head, ↑8
    c8h, c16h, c32h = nf(8, head_w), nf(16, head_w), nf(32, head_w)
    for b, last in enumerate(lasts):
        if last == 2:
            t.conv(c32h, c16h, 1, size // 32)
            t.resize(c16h, size // 16)
            t.conv(c16h + ch_16[b], c16h, 3, size // 16)
            t.conv(c16h, c8h, 1, size // 16)
            t.resize(c8h, size // 8)
            t.conv(c8h + ch_8[b], c8h, 3, size // 8)
        elif last == 1:
            t.conv(c16h, c8h, 1, size // 16)
            t.resize(c8h, size // 8)
            t.conv(c8h + ch_8[b], c8h, 3, size // 8)
    fused = c8h * nb
    t.conv(fused, fused, 1, size // 8)  # the fusion conv keeps 2·8F·w for two branches
    mid = fused if fused <= 256 else fused // 2
    t.conv(fused, mid, 3, size // 8)
    t.conv(mid, CLASSES, 1, size // 8, bn=False, bias=True)
    t.resize(CLASSES, size)
    return {"params": t.params, "macs": t.macs}


def _cells(spec: str) -> list[dict]:
    """``"conv:8 zoomed_conv:4 conv_2x:6v ..."``: op:width, ``v`` = downsampling cell; scales follow."""
    cells, scale = [], 8
    for item in spec.split():
        op, w = item.split(":")
        down = w.endswith("v")
        cells.append({"op": op, "scale": scale, "down": down, "width": int(w.rstrip("v"))})
        scale *= 2 if down else 1
    return cells


def _arch(stem: int, head: int, *branches: tuple[int, str]) -> dict:
    return {"F": 12, "width_base": 12, "stem_width": stem, "head_width": head,
            "branches": [{"scale": s, "cells": _cells(c)} for s, c in branches]}


# a student at the OEM authors' width 8/12 stem/head, branches [1/32, 1/16] sharing their first three cells
STUDENT = _arch(8, 8,
                (32, ("conv:6 zoomed_conv:4 conv_2x:8v zoomed_conv_2x:4 conv:10 zoomed_conv:4 conv:6v "
                      "zoomed_conv:4 conv_2x:4 zoomed_conv_2x:6 conv:8")),
                (16, "conv:6 zoomed_conv:4 conv_2x:8v conv:6 zoomed_conv_2x:12 zoomed_conv:4 conv_2x:8"))
# a teacher (full widths), branches [1/32, 1/8], no shared cell
TEACHER = _arch(12, 12,
                (32, "conv_2x:12 conv:12v conv_2x:12 zoomed_conv:12 conv:12v conv_2x:12 conv:12"),
                (8, "zoomed_conv_2x:12 conv:12 conv_2x:12 zoomed_conv:12 conv:12"))
# branches that agree on every cell but the last of the 1/16 branch: the original never merges a last cell
LAST_NOT_SHARED = _arch(8, 8, (32, "conv:6 conv:8v conv:8 conv:8 conv:8v conv:8"), (16, "conv:6 conv:8v conv:8"))


def _space(preset: str = "oem") -> FasterSegSearchSpace:
    return FasterSegSearchSpace.from_preset(preset, in_channels=3, num_classes=CLASSES)


@pytest.mark.parametrize("name", ["student", "teacher", "last_not_shared", "oem_max", "oem_min"])
def test_counts_equal_the_original_construction(name):
    space = _space()
    arch = {"student": STUDENT, "teacher": TEACHER, "last_not_shared": LAST_NOT_SHARED,
            "oem_max": space.max_arch(), "oem_min": space.min_arch()}[name]
    arch = space.validate(arch)
    ref = reference_counts(arch, 1024)
    ours = space.cost(arch, 1024)
    assert ours["params"] == ref["params"]
    assert abs(ours["macs"] - ref["macs"]) <= 0.005 * ref["macs"]
    model = space.build(arch).eval()
    size = 64  # the built network, counted by the profiler's own tools (fvcore traces a forward)
    assert count_params(model, 3, size) == ref["params"]
    with torch.no_grad():
        macs = fvcore_macs(model, torch.zeros(1, 3, size, size))[0]
    ref_small = reference_counts(arch, size)["macs"]
    assert abs(macs - ref_small) <= 0.005 * ref_small


def test_student_fusion_and_head_widths():
    # F = 12, head 8/12: each branch reaches 1/8 with 64 channels; the fusion keeps 128, the head works on 128
    model = _space().build(STUDENT)
    assert tuple(model.fusion_head.fusion[0].weight.shape) == (128, 128, 1, 1)
    assert tuple(model.fusion_head.head.conv3x3[0].weight.shape) == (128, 128, 3, 3)
    assert tuple(model.fusion_head.head.conv1x1.weight.shape) == (CLASSES, 128, 1, 1)
    # the student's first three cells are computed once for both branches; the last cells are their own
    assert model.branch_cells[0][:3] == model.branch_cells[1][:3]
    shared = _space().build(LAST_NOT_SHARED)
    assert shared.branch_cells[0][:2] == shared.branch_cells[1][:2]
    assert shared.branch_cells[1][2] not in shared.branch_cells[0]


def test_tiny_preset_rounds_channels_like_the_original():
    # F = 4: 8·4·8/12 = 21.3 → 21 channels (plain round, as num_filters; not a multiple of 8)
    space = _space("tiny")
    arch = space.sample(np.random.default_rng(3))
    assert space.cost(arch, 256)["params"] == reference_counts(arch, 256)["params"]
    model = space.build(arch)
    assert model.fusion_head.fusion[0].weight.shape[0] == 2 * 21
