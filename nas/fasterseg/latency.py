"""FasterSeg latency model: which operators/shapes to measure, the differentiable supernet latency,
and the end-to-end latency of a derived architecture, all read from one :class:`LatencyTable`.

Entries (``H``/``W`` are the input's feature size, ``size // scale``):

- ``<op>|H|W|cin|cout|stride`` — every cell operator (skip included) at every width the supernet can use;
  each operator is charged its own latency (``zoomed_conv_2x`` is not ``conv_2x``);
- ``stem|H|W|cin|cout`` — the stem of each role (teacher, student);
- ``conv1x1_up|H|W|cin|cout`` — a refinement's 1x1 ConvBNReLU and its bilinear ↑2; the refinement's 3x3
  fusion conv is the ``conv`` entry at its concatenated width (the concat itself, a copy, is not charged);
- ``fusion_head|H|W|cin|cout|classes`` — fusion 1x1 (``cout = cin``: it keeps the branches' concatenated
  width), the head on that width and the bilinear ↑8 to the input size.

Tables carry ``layout`` (:data:`TABLE_LAYOUT`) in their conditions: the version of the network structure
their entries charge. Layout 2 is the METHODS §5 network (fusion keeps the concatenated width); tables
written before the field existed charged a fusion conv that halved it (layout 1) and are refused with a
message that says how to measure a new one, rather than read with wrong widths.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from terralite.nas.latency_table import LatencyTable, entry_key
from terralite.nas.op_timer import time_module
from terralite.search_spaces.fasterseg.config import SCALES, cell_channels, stem_channels
from terralite.search_spaces.fasterseg.network import plan_branches, share_cells
from terralite.search_spaces.fasterseg.ops import OP_NAMES, ConvBN, FusionHead, Stem, build_op, resize
from terralite.search_spaces.fasterseg.slimmable import build_slim_op
from terralite.search_spaces.fasterseg.space import FasterSegSearchSpace
from terralite.search_spaces.fasterseg.supernet import ROLES, WIDTH_OFFSET
from terralite.device import device_name
from terralite.errors import TerraLiteError
from terralite.versions import library_versions

# weights of the three decoupled latency evaluations (ops live, paths live, widths live) — METHODS §2
DECOUPLED_WEIGHTS = {"ops": 0.002, "paths": 0.994, "widths": 0.004}
# version of the network structure a table's entries charge (2: the fusion conv keeps the concatenated width)
TABLE_LAYOUT = 2


def check_table_layout(table: LatencyTable) -> None:
    """Refuse a table whose entries charge another network structure than the one built today."""
    layout = table.conditions.get("layout", 1)
    if layout != TABLE_LAYOUT:
        raise TerraLiteError(
            f"{table.source} has FasterSeg table layout {layout}: it was measured for networks whose fusion conv "
            f"halved the branches' concatenated width, so it would charge wrong fusion and head widths (this "
            f"TerraLite builds layout {TABLE_LAYOUT}). Measure it again with `terralite latency-table fasterseg` "
            "(same --preset, --size, --device, --runtime)")


def cell_key(op: str, h: int, cin: int, cout: int, stride: int) -> str:
    return entry_key(op, H=h, W=h, cin=cin, cout=cout, stride=stride)


class _FixedWidth(nn.Module):
    """A slimmable operator pinned to one output width (how ``skip`` is timed: it never survives derivation)."""

    def __init__(self, op: nn.Module, c_out: int):
        super().__init__()
        self.op, self.c_out = op, c_out

    def forward(self, x):
        return self.op(x, self.c_out)


class _Conv1x1Up(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBN(cin, cout, 1)

    def forward(self, x):
        return resize(self.conv(x), (x.shape[-2] * 2, x.shape[-1] * 2))


class _FusionHeadOne(nn.Module):
    def __init__(self, cin: int, classes: int, out_size: int):
        super().__init__()
        self.fh, self.out_size = FusionHead(cin, classes), out_size

    def forward(self, x):
        return self.fh([x], (self.out_size, self.out_size))


def _cell_module(op: str, cin: int, cout: int, stride: int) -> nn.Module:
    if op == "skip":
        return _FixedWidth(build_slim_op("skip", cin, [cout], stride), cout)
    return build_op(op, cin, cout, stride)


def space_fingerprint(space: FasterSegSearchSpace) -> dict:
    """The search-space fields a table's entries depend on."""
    return dataclasses.asdict(space.cfg)


def table_conditions(space: FasterSegSearchSpace, size: int, device: torch.device, runtime: str,
                     precision: str = "fp32", batch: int = 1) -> dict:
    """The conditions a FasterSeg table is valid for (what a search checks)."""
    return {"search_space": "fasterseg", "device_type": device.type, "runtime": runtime, "precision": precision,
            "size": size, "batch": batch, "in_channels": space.in_channels, "num_classes": space.num_classes,
            "space": space_fingerprint(space), "layout": TABLE_LAYOUT}


def _role_channels(space: FasterSegSearchSpace, role: str) -> tuple[int, list[int]]:
    """(stem output, head channels at 1/8, 1/16, 1/32) of a role."""
    stem_w, head_w = space.role_widths(role)
    c = space.cfg
    return stem_channels(c.F, stem_w, c.width_base)[2], [cell_channels(s, c.F, head_w, c.width_base) for s in SCALES]


def table_entries(space: FasterSegSearchSpace, size: int) -> dict[str, tuple[Callable[[], nn.Module], tuple]]:
    """Every entry the supernet and its derived networks can need: key → (module factory, input shape)."""
    if size % 32:
        raise ValueError(f"size must be divisible by 32, got {size}")
    c = space.cfg
    node = [sorted({cell_channels(s, c.F, w, c.width_base) for w in c.widths}) for s in SCALES]
    roles = {r: _role_channels(space, r) for r in ROLES}
    stems = sorted({roles[r][0] for r in ROLES})
    entries: dict = {}

    def add(key, factory, shape):
        entries.setdefault(key, (factory, shape))

    for j, s in enumerate(SCALES):
        h = size // s
        ins = sorted(set(node[j]) | (set(stems) if j == 0 else set()))
        keep_outs = sorted(set(node[j]) | {roles[r][1][j] for r in ROLES})
        for op in OP_NAMES:
            for cin in ins:
                for cout in keep_outs:
                    add(cell_key(op, h, cin, cout, 1), lambda op=op, cin=cin, cout=cout: _cell_module(op, cin, cout, 1), (1, cin, h, h))
                if j < 2:
                    for cout in node[j + 1]:
                        add(cell_key(op, h, cin, cout, 2), lambda op=op, cin=cin, cout=cout: _cell_module(op, cin, cout, 2), (1, cin, h, h))
    for r in ROLES:
        stem_w = space.role_widths(r)[0]
        stem_out, (c8h, c16h, c32h) = roles[r]
        widths = stem_channels(c.F, stem_w, c.width_base)
        add(entry_key("stem", H=size, W=size, cin=space.in_channels, cout=stem_out),
            lambda widths=widths: Stem(space.in_channels, widths), (1, space.in_channels, size, size))
        h8, h16, h32 = size // 8, size // 16, size // 32
        add(entry_key("conv1x1_up", H=h32, W=h32, cin=c32h, cout=c16h), lambda a=c32h, b=c16h: _Conv1x1Up(a, b), (1, c32h, h32, h32))
        add(entry_key("conv1x1_up", H=h16, W=h16, cin=c16h, cout=c8h), lambda a=c16h, b=c8h: _Conv1x1Up(a, b), (1, c16h, h16, h16))
        for c16f in node[1]:
            add(cell_key("conv", h16, c16h + c16f, c16h, 1), lambda a=c16h + c16f, b=c16h: build_op("conv", a, b, 1), (1, c16h + c16f, h16, h16))
        for c8f in sorted(set(node[0]) | set(stems)):
            add(cell_key("conv", h8, c8h + c8f, c8h, 1), lambda a=c8h + c8f, b=c8h: build_op("conv", a, b, 1), (1, c8h + c8f, h8, h8))
        for bs in c.branch_sets:
            cin = len(bs) * c8h  # every branch reaches 1/8 with c8h channels; the fusion keeps their sum
            add(entry_key("fusion_head", H=h8, W=h8, cin=cin, cout=cin, classes=space.num_classes),
                lambda cin=cin: _FusionHeadOne(cin, space.num_classes, size), (1, cin, h8, h8))
    return entries


def measure_table(space: FasterSegSearchSpace, size: int, device: torch.device, runtime: str, warmup: int = 5,
                  iters: int = 20, threads: int | None = None, progress: Callable[[int, int, str], None] | None = None,
                  only: set[str] | None = None, rounds: int = 3) -> LatencyTable:
    """Time every entry in isolation on ``device`` with ``runtime``; ``only`` restricts to some keys.

    Every entry is timed in each of ``rounds`` passes over the table (in a new random order each pass) and keeps
    the median of its passes' medians: a machine whose speed drifts over the minutes a pass takes then charges
    no entry for the moment it happened to be timed (on the 2-core development CPU one pass ranked 20 networks
    at Spearman 0.64 against their measured latency).
    """
    if rounds < 1:
        raise TerraLiteError(f"--rounds must be at least 1, got {rounds}")
    entries = table_entries(space, size)
    keys = [k for k in entries if only is None or k in only]
    table = LatencyTable(conditions={
        **table_conditions(space, size, device, runtime),
        "device": device_name(device), "threads": threads,  # None: the runtime's default
        "warmup": warmup, "iters": iters, "rounds": rounds, "statistic": "median of the rounds' medians",
        "versions": library_versions(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })
    torch.manual_seed(0)
    order = np.random.default_rng(0)
    timings: dict[str, list[float]] = {key: [] for key in keys}
    done = 0
    for _ in range(rounds):
        for index in order.permutation(len(keys)):
            key = keys[index]
            factory, shape = entries[key]
            timings[key].append(time_module(factory().to(device), shape, runtime, device, warmup, iters, threads))
            done += 1
            if progress:
                progress(done, rounds * len(keys), key)
    table.entries = {key: float(np.median(timings[key])) for key in keys}
    return table


# -- end-to-end latency of a derived architecture --------------------------------------------------------
def arch_latency(table: LatencyTable, arch: dict, size: int, in_channels: int, num_classes: int) -> dict:
    """Predicted latency (ms) of the network ``arch`` describes, by part: stem, cells, fusion, total."""
    check_table_layout(table)
    stem, plans = plan_branches(arch)
    unique, _ = share_cells(plans)
    F_, base, head_w = arch["F"], arch["width_base"], arch["head_width"]
    c8h, c16h = cell_channels(8, F_, head_w, base), cell_channels(16, F_, head_w, base)
    h8, h16, h32 = size // 8, size // 16, size // 32
    parts = {"stem": table.lookup("stem", H=size, W=size, cin=in_channels, cout=stem[2])}
    parts["cells"] = sum(table.lookup(c.op, H=size // c.scale, W=size // c.scale, cin=c.c_in, cout=c.c_out, stride=2 if c.down else 1)
                         for c in unique)
    fusion = 0.0
    for plan in plans:
        feats = plan.feature_channels
        if plan.scale == 32:
            fusion += table.lookup("conv1x1_up", H=h32, W=h32, cin=feats[32], cout=c16h)
            fusion += table.lookup("conv", H=h16, W=h16, cin=c16h + feats[16], cout=c16h, stride=1)
        if plan.scale >= 16:
            fusion += table.lookup("conv1x1_up", H=h16, W=h16, cin=c16h, cout=c8h)
            fusion += table.lookup("conv", H=h8, W=h8, cin=c8h + feats[8], cout=c8h, stride=1)
    fused = len(plans) * c8h  # ops.FusionHead keeps the concatenated width
    fusion += table.lookup("fusion_head", H=h8, W=h8, cin=fused, cout=fused, classes=num_classes)
    parts["fusion"] = fusion
    parts["total"] = parts["stem"] + parts["cells"] + parts["fusion"]
    return parts


# -- differentiable latency of the supernet's student ------------------------------------------------------
class SupernetLatency(nn.Module):
    """Expected student latency of a supernet, differentiable in α, β and the width logits.

    For each cell the table gives a tensor ``(input width, op, output width)`` of ms; the cell's expected
    latency contracts it with the input node's width distribution, softmax(α) and the output node's width
    distribution. Paths accumulate per scale: the latency to reach node (i, j) is
    ``β_keep·T(i-1, j) + β_down·T_down(i-1, j-1) + cell latency`` with β of that (layer, scale) — the
    official code used the 1/32 β for the 1/16 path. The total sums the three last-layer nodes (as the
    official code). Widths enter as expectations Σ p(width)·table, so the gradient moves probability
    towards cheaper widths (the official argmax·score only rescales the current width's probability).
    """

    def __init__(self, space: FasterSegSearchSpace, table: LatencyTable, size: int):
        super().__init__()
        check_table_layout(table)
        c = space.cfg
        self.layers = c.layers
        node = [[cell_channels(s, c.F, w, c.width_base) for w in c.widths] for s in SCALES]
        stem_out, heads = _role_channels(space, "student")
        for i in range(c.layers):
            for j in range(min(i, 2) + 1):
                h = size // SCALES[j]
                ins = [stem_out] if i == 0 else node[j]
                outs = [heads[j]] if i == c.layers - 1 else node[j]
                self.register_buffer(f"keep_{i}_{j}", self._tensor(table, h, ins, outs, 1), persistent=False)
                if j < 2 and i < c.layers - 1:
                    self.register_buffer(f"down_{i}_{j}", self._tensor(table, h, ins, node[j + 1], 2), persistent=False)

    @staticmethod
    def _tensor(table: LatencyTable, h: int, ins: list[int], outs: list[int], stride: int) -> torch.Tensor:
        return torch.tensor([[[table.lookup(op, H=h, W=h, cin=a, cout=b, stride=stride) for b in outs] for op in OP_NAMES]
                             for a in ins], dtype=torch.float32)

    def forward(self, supernet, live: str) -> torch.Tensor:
        """Expected latency (ms) with only ``live`` (``ops``, ``paths`` or ``widths``) differentiable;
        the others frozen to uniform ops, uniform paths and full width."""
        L = self.layers
        alphas = [F.softmax(a, -1) if live == "ops" else torch.full_like(a, 1.0 / a.shape[-1]) for a in supernet.alphas("student")]
        betas = [None] + [F.softmax(b, -1) if live == "paths" else torch.full_like(b, 0.5) for b in supernet.betas("student")[1:]]

        def width_probs(i: int, j: int) -> torch.Tensor:
            if i < 0 or i == L - 1:
                return torch.ones(1, device=alphas[0].device)  # the stem / head width: one choice
            logits = supernet.ratios()[j][i - WIDTH_OFFSET[j]]
            if live == "widths":
                return F.softmax(logits, -1)
            return F.one_hot(torch.tensor(logits.shape[-1] - 1), logits.shape[-1]).to(logits)

        keep_prev = {0: alphas[0].new_zeros(())}
        down_prev: dict[int, torch.Tensor] = {}
        for i in range(L):
            keep, down = {}, {}
            for j in range(min(i, 2) + 1):
                if j == 0:
                    reach = keep_prev[0]
                elif i == j:
                    reach = down_prev[j - 1]
                else:
                    beta = betas[j][i - j - 1]  # (down, keep) of this scale's own β row
                    reach = beta[0] * down_prev[j - 1] + beta[1] * keep_prev[j]
                p_in = width_probs(i - 1, j) if i > 0 else width_probs(-1, j)
                a = alphas[j][i - j]
                keep[j] = reach + torch.einsum("i,o,k,iok->", p_in, a, width_probs(i, j), getattr(self, f"keep_{i}_{j}"))
                if j < 2 and i < L - 1:
                    down[j] = reach + torch.einsum("i,o,k,iok->", p_in, a, width_probs(i, j + 1), getattr(self, f"down_{i}_{j}"))
            keep_prev, down_prev = keep, down
        return keep_prev[0] + keep_prev[1] + keep_prev[2]

    def loss(self, supernet) -> torch.Tensor:
        """The decoupled latency: 0.002·ops-live + 0.994·paths-live + 0.004·widths-live (ms)."""
        return sum(w * self(supernet, live) for live, w in DECOUPLED_WEIGHTS.items())


def measure_table_for_preset(preset: str, overrides: dict, size: int, device: str, runtime: str, out: str | Path,
                             in_channels: int = 3, num_classes: int = 8, warmup: int = 5, iters: int = 20,
                             threads: int | None = None, rounds: int = 3) -> LatencyTable:
    """``terralite latency-table fasterseg``: measure the table of a space preset (``overrides``: space fields)
    with progress lines on stderr, and save it to ``out`` (its folder is checked before anything is timed)."""
    import sys

    from terralite.atomic import ensure_parent
    from terralite.device import resolve_device
    from terralite.search_spaces.fasterseg.config import preset_config

    if size % 32 or size < 32:
        raise TerraLiteError(f"--size must be a positive multiple of 32, got {size}")
    ensure_parent(out)
    dev = resolve_device(device)
    try:
        space = FasterSegSearchSpace(preset_config(preset, **overrides), in_channels, num_classes)
    except TypeError as exc:
        raise TerraLiteError(f"--set: {exc}") from None

    def progress(n: int, total: int, key: str) -> None:
        if n == 1 or n % 25 == 0 or n == total:
            print(f"latency-table: {n}/{total} {key}", file=sys.stderr)

    table = measure_table(space, size, dev, runtime, warmup, iters, threads, progress, rounds=rounds)
    table.save(out)
    return table
