"""Parameter and MAC counts of derived SparseMask networks against an independent layer-by-layer count.

The reference below is written from METHODS.md §5 and the MobileNetV2 paper's (t, c, n, s) table, not from the
network code: the original MobileNetV2 (every bottleneck, the first one included, has its 1x1 expansion
conv), the taps, and the decoder (per kept input a 1x1 conv without bias to 64 channels and, when the sizes
differ, a bilinear resize; one BN per live stage; the head's 1x1 conv with bias at stride 2; the final
bilinear x2 to the input size, which our network includes and counts).

MAC conventions (fvcore's, the suite's counter): a conv costs ``Cin/groups · k² · Cout`` per output pixel
(bias free), an eval-mode affine BN 2 per element, a bilinear resize 4 per output element, the global
average pool 1 per input element, ReLU6 and additions nothing.
"""

import pytest
import torch

from terralite.benchmark.profiler import profile_model
from terralite.search_spaces.sparsemask.arch import validate_arch
from terralite.search_spaces.sparsemask.cost import CostModel
from terralite.search_spaces.sparsemask.network import build

# MobileNetV2: (expansion t, channels c, repeats n, first stride s) per bottleneck stage
BOTTLENECKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
DECODER = 64


class Count:
    """Running totals of one network: parameters, and MACs split by kind."""

    def __init__(self):
        self.params = 0
        self.macs = {"conv": 0, "bn": 0, "resize": 0, "pool": 0}

    def conv(self, cin, cout, k, h, w, groups=1, bias=False):
        self.params += cin // groups * k * k * cout + (cout if bias else 0)
        self.macs["conv"] += cin // groups * k * k * cout * h * w

    def bn(self, c, h, w):
        self.params += 2 * c
        self.macs["bn"] += 2 * c * h * w

    def resize(self, c, h, w):
        self.macs["resize"] += 4 * c * h * w

    @property
    def total_macs(self):
        return sum(self.macs.values())


def reference_count(stages: dict, size: int, in_channels: int = 3, classes: int = 8) -> Count:
    """The network ``stages`` describes at ``size x size``, counted layer by layer."""
    n = Count()
    # taps deep → shallow: (channels, stride); built shallow → deep
    taps = {8: (32, 2)}
    used = [int(name[3:]) for inputs in stages.values() for name in inputs if name.startswith("tap")]
    uses_pool = any("up0" in inputs for inputs in stages.values())
    deepest = min(used + ([0] if uses_pool else []))
    # encoder
    h = size // 2
    n.conv(in_channels, 32, 3, h, h), n.bn(32, h, h)  # stem, tap 8
    cin, stride, tap = 32, 2, 7
    for t, c, repeats, s in BOTTLENECKS:
        if tap < deepest:
            break
        for i in range(repeats):
            hidden = cin * t
            n.conv(cin, hidden, 1, h, h), n.bn(hidden, h, h)  # expansion (kept at t = 1: the original's)
            if i == 0 and s == 2:
                h, stride = h // 2, stride * 2
            n.conv(hidden, hidden, 3, h, h, groups=hidden), n.bn(hidden, h, h)  # depthwise
            n.conv(hidden, c, 1, h, h), n.bn(c, h, h)  # projection
            cin = c
        taps[tap] = (c, stride)
        tap -= 1
    if deepest == 0:
        n.conv(320, 1280, 1, h, h), n.bn(1280, h, h)
        taps[0] = (1280, 32)
    # decoder: stage i works at tap i's stride
    stage_stride = {i: st for i, st in enumerate((32, 32, 32, 16, 16, 8, 4, 2, 2))}
    for i in range(9):
        inputs = stages[f"stage{i}"]
        if not inputs:
            continue  # an empty stage has no parameters
        out = size // stage_stride[i]
        for name in inputs:
            index = int(name[3:] if name.startswith("tap") else name[2:])
            if name.startswith("tap"):
                channels, side = taps[index][0], size // taps[index][1]
            elif index == 0:
                channels, side = 1280, 1  # global pool of tap 0
            else:
                channels, side = DECODER, size // stage_stride[index - 1]
            n.conv(channels, DECODER, 1, side, side)
            if side != out:
                n.resize(DECODER, out, out)
        n.bn(DECODER, out, out)
    if uses_pool:
        n.macs["pool"] += 1280 * (size // 32) ** 2
    half = size // 2
    n.conv(DECODER, classes, 1, half, half, bias=True)  # head at stride 2
    n.resize(classes, size, size)  # final bilinear x2 inside the network
    return n


def _stages(**kept):
    return {f"stage{s}": kept.get(f"stage{s}", []) for s in range(9)}


MASKS = {
    # each stage takes the deepest tap and the previous stage (the OEM-density reference of results/sparsemask)
    "two_per_stage": _stages(**{f"stage{s}": ["tap0", "up0" if s == 0 else f"up{s}"] for s in range(9)}),
    # a shallow network: the encoder ends after bottleneck 2 (tap 5); stages 0..4 and 6 empty
    "shallow": _stages(stage5=["tap5"], stage7=["tap7", "up6"], stage8=["tap8", "up8"]),
    # the pooled deepest feature (with tap 2) through stages 2 and 3 into the output stage
    "pool_path": _stages(stage2=["up0", "tap2"], stage3=["tap3", "up3"], stage8=["tap8", "up4"]),
}


@pytest.mark.parametrize("name", sorted(MASKS))
def test_counts_equal_an_independent_reference(name):
    arch = validate_arch({"stages": MASKS[name]})
    model = build(arch, 3, 8)
    ref = reference_count(MASKS[name], 64)
    params = sum(p.numel() for p in model.parameters())
    assert params == pytest.approx(ref.params, rel=0.005) and params == ref.params
    row = profile_model(model, size=64, in_channels=3)
    assert row["params_m"] * 1e6 == pytest.approx(ref.params, abs=0.5)
    assert round(row["gmacs"] * 1e9) == ref.total_macs
    assert round(row["gmacs_by_operator"]["conv"] * 1e9) == ref.macs["conv"]
    # the analytic cost model (what budgets and search logs use) equals both, at 64 px and at 1024 px
    for size in (64, 1024):
        cost = CostModel(size)
        assert (cost.arch_params(arch), cost.arch_macs(arch)) == (ref.params, reference_count(MASKS[name], size).total_macs)


def test_reference_counts_at_1024():
    """The figures the docs state for these masks (1x3x1024x1024, 8 classes, final x2 included)."""
    two = reference_count(MASKS["two_per_stage"], 1024)
    assert two.params == 3_078_600
    # resizes worked out by hand: up0 (1x1 → 32x32) into stage 0; tap0 (32x32) into stages 3..8; up_s into
    # stage s where stage s-1 works at another stride (s = 3, 5, 6, 7); the final x2 of the 8 logits
    tap0 = 64**2 + 64**2 + 128**2 + 256**2 + 512**2 + 512**2
    ups = 64**2 + 128**2 + 256**2 + 512**2
    assert two.macs["resize"] == 4 * 64 * (32**2 + tap0 + ups) + 4 * 8 * 1024**2
    assert (two.total_macs, two.macs["conv"]) == (9_528_426_496, 8_871_952_384)
    final_x2 = 4 * 8 * 1024 * 1024  # 0.034 GMACs: what the network counts beyond the original's inference graph
    assert final_x2 / two.total_macs < 0.004
