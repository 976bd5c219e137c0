"""Analytic parameter and MAC counts of derived FasterSeg networks, in fvcore's conventions.

The counts follow :class:`~terralite.search_spaces.fasterseg.network.FasterSegNet` layer by layer, for one
eval-mode forward: the deployed network, so the 1/16 and 1/32 auxiliary heads (run only in training) are
left out, as the profiler's ``params_m`` leaves them out. fvcore (trace-based, the suite's counter) charges a
conv ``Cin · k² · Cout`` per output pixel (bias not counted), an eval-mode affine BN 2 per element, a
bilinear resize 4 per output element (also a resize to the same size: it is still traced), and nothing for
ReLU or concatenation. Cells that branches share are computed, and counted, once.
"""

from __future__ import annotations

from terralite.search_spaces.fasterseg.arch import validate_arch
from terralite.search_spaces.fasterseg.config import cell_channels
from terralite.search_spaces.fasterseg.network import plan_branches, share_cells

HW = tuple[int, int]


def _strided(hw: HW, stride: int) -> HW:
    """Output size of a 3x3 conv with padding 1 (or a 1x1 conv without) at ``stride``."""
    return (hw[0] - 1) // stride + 1, (hw[1] - 1) // stride + 1


def _half(hw: HW) -> HW:
    """The zoomed operators' ↓2 size (``ops.half_size``)."""
    return max(hw[0] // 2, 1), max(hw[1] // 2, 1)


class _Tally:
    """Running totals; each method counts one layer kind at its output size ``hw``."""

    def __init__(self) -> None:
        self.params = 0
        self.macs = 0

    def conv(self, c_in: int, c_out: int, k: int, hw: HW, bias: bool = False) -> None:
        self.params += c_in * c_out * k * k + (c_out if bias else 0)
        self.macs += c_in * c_out * k * k * hw[0] * hw[1]

    def conv_bn(self, c_in: int, c_out: int, k: int, hw: HW) -> None:
        """``ops.ConvBN``: the conv, then an affine BN (2 parameters per channel, 2 MACs per element)."""
        self.conv(c_in, c_out, k, hw)
        self.params += 2 * c_out
        self.macs += 2 * c_out * hw[0] * hw[1]

    def resize(self, channels: int, hw: HW) -> None:
        self.macs += 4 * channels * hw[0] * hw[1]

    def op(self, name: str, c_in: int, c_out: int, stride: int, hw: HW) -> HW:
        """One cell's operator (``ops.PLAIN_OPS``) on an input of size ``hw``; returns its output size."""
        if name in ("conv", "conv_2x"):
            out = _strided(hw, stride)
            self.conv_bn(c_in, c_out, 3, out)
            if name == "conv_2x":
                self.conv_bn(c_out, c_out, 3, out)
            return out
        half = _half(hw)  # zoomed: ↓2, conv(s) at half size, ↑2 back unless the cell is strided
        self.resize(c_in, half)
        self.conv_bn(c_in, c_out, 3, half)
        if name == "zoomed_conv_2x":
            self.conv_bn(c_out, c_out, 3, half)
        if stride == 2:
            return half
        self.resize(c_out, hw)
        return hw

    def head(self, c_in: int, num_classes: int, hw: HW) -> None:
        """``ops.Head``: 3x3 ConvBN to ``mid``, 1x1 conv with bias to the classes."""
        mid = c_in if c_in <= 256 else c_in // 2
        self.conv_bn(c_in, mid, 3, hw)
        self.conv(mid, num_classes, 1, hw, bias=True)


def arch_cost(arch: dict, in_channels: int = 3, num_classes: int = 8, height: int = 1024, width: int | None = None) -> dict[str, int]:
    """``{"params", "macs"}`` of ``FasterSegNet(arch, in_channels, num_classes)`` at ``height x width``."""
    arch = validate_arch(arch)
    width = height if width is None else width
    F, base, head_w = arch["F"], arch["width_base"], arch["head_width"]
    c8h, c16h = cell_channels(8, F, head_w, base), cell_channels(16, F, head_w, base)
    t = _Tally()

    (c1, c2, c3), plans = plan_branches(arch)
    hw = _strided((height, width), 2)  # ops.Stem: ConvBN s2, then two Conv2x s2
    t.conv_bn(in_channels, c1, 3, hw)
    for c_in, c_out in ((c1, c2), (c2, c3)):
        hw = t.op("conv_2x", c_in, c_out, 2, hw)
    hw8 = hw

    unique, branch_ids = share_cells(plans)
    cell_hw: dict[int, HW] = {}  # output size of each unique cell, counted when first computed
    for plan, ids in zip(plans, branch_ids):
        sizes = {8: hw8}  # output size of the branch's last feature at each scale
        hw = hw8
        for idx in ids:
            if idx not in cell_hw:
                cell = unique[idx]
                cell_hw[idx] = t.op(cell.op, cell.c_in, cell.c_out, 2 if cell.down else 1, hw)
            hw = cell_hw[idx]
            sizes[unique[idx].out_scale] = hw
        feats = plan.feature_channels
        if plan.scale == 32:  # ops.Refine32: 1x1 → ↑1/16, 3x3 fuse, 1x1 → ↑1/8, 3x3 fuse
            t.conv_bn(feats[32], c16h, 1, sizes[32])
            t.resize(c16h, sizes[16])
            t.conv_bn(c16h + feats[16], c16h, 3, sizes[16])
            t.conv_bn(c16h, c8h, 1, sizes[16])
            t.resize(c8h, sizes[8])
            t.conv_bn(c8h + feats[8], c8h, 3, sizes[8])
        elif plan.scale == 16:  # ops.Refine16: 1x1 → ↑1/8, 3x3 fuse
            t.conv_bn(feats[16], c8h, 1, sizes[16])
            t.resize(c8h, sizes[8])
            t.conv_bn(c8h + feats[8], c8h, 3, sizes[8])

    fused = len(plans) * c8h  # ops.FusionHead: 1x1 fusion keeping the concatenated width, head, ↑ to the input size
    t.conv_bn(fused, fused, 1, hw8)
    t.head(fused, num_classes, hw8)
    t.resize(num_classes, (height, width))
    return {"params": t.params, "macs": t.macs}
