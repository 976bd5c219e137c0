"""FasterSeg search space: operators, supernet, derivation rules, built networks."""

import numpy as np
import pytest
import torch

from terralite.search_spaces.fasterseg.config import cell_channels, preset_config, stem_channels
from terralite.search_spaces.fasterseg.ops import OP_NAMES, PLAIN_OPS, build_op
from terralite.search_spaces.fasterseg.slimmable import MixedOp, build_slim_op
from terralite.search_spaces.fasterseg.space import FasterSegSearchSpace
from terralite.errors import TerraLiteError
from terralite.models import build_model


@pytest.mark.parametrize("name", list(PLAIN_OPS))
@pytest.mark.parametrize("stride", [1, 2])
def test_plain_op_shapes(name, stride):
    op = build_op(name, 16, 24, stride).eval()
    y = op(torch.randn(2, 16, 32, 32))
    assert y.shape == (2, 24, 32 // stride, 32 // stride)
    assert (y >= 0).all()  # every op ends in ReLU


@pytest.mark.parametrize("name", OP_NAMES)
@pytest.mark.parametrize("stride", [1, 2])
def test_slim_op_widths(name, stride):
    op = build_slim_op(name, 32, [8, 16, 24, 32], stride)
    for c_in, c_out in [(32, 32), (16, 8), (24, 16)]:
        y = op(torch.randn(2, c_in, 16, 16), c_out)
        assert y.shape == (2, c_out, 16 // stride, 16 // stride)


def test_switchable_bn_one_per_width():
    op = build_slim_op("conv", 32, [8, 16, 16, 32], 1)
    assert sorted(op.conv1.bn.bns.keys(), key=int) == ["8", "16", "32"]
    mixed = MixedOp(32, [8, 32], 1)
    w = torch.softmax(torch.zeros(len(OP_NAMES)), 0)
    assert mixed(torch.randn(1, 24, 8, 8), w, 8).shape == (1, 8, 8, 8)


def test_channel_rules_match_methods():
    # OEM: F=12, student 8/12 → stem 32, 64, 64; cells 32..96 at 1/8 (multiples of 8 = plain round)
    assert stem_channels(12, 8, 12) == (32, 64, 64)
    assert stem_channels(12, 12, 12) == (48, 96, 96)
    assert [cell_channels(8, 12, w, 12) for w in (4, 6, 8, 10, 12)] == [32, 48, 64, 80, 96]
    assert cell_channels(32, 12, 12, 12) == 384


def test_supernet_forward_and_arch_grads():
    space = FasterSegSearchSpace.from_preset("tiny")
    net = space.supernet()
    x = torch.randn(2, 3, 32, 32)
    preds = net(x, "student", "gumbel")
    assert set(preds) == {"8", "16", "32", "32+16"}
    assert all(p.shape == (2, 8, 4, 4) for p in preds.values())
    sum(p.mean() for p in preds.values()).backward()
    grads = {k: p.grad is not None and bool(p.grad.abs().sum() > 0) for k, p in net.arch.items()}
    assert all(v for k, v in grads.items() if k.startswith("student"))
    assert not any(v for k, v in grads.items() if k.startswith("teacher"))
    with torch.no_grad():
        for role, mode in (("teacher", "max"), ("student", "min"), ("student", "random"), ("student", "argmax")):
            assert net(x, role, mode)["32+16"].shape == (2, 8, 4, 4)
    arch_ids = {id(p) for p in net.arch_parameters()}
    assert not arch_ids & {id(p) for p in net.weight_parameters()}
    assert len(net.arch_parameters()) + len(net.weight_parameters()) == len(list(net.parameters()))


@pytest.mark.parametrize("bands", [3, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_build_sampled_archs(bands, seed):
    space = FasterSegSearchSpace.from_preset("tiny", in_channels=bands, num_classes=6)
    arch = space.sample(np.random.default_rng(seed))
    net = space.build(arch).eval()
    for size in (64, 96):
        with torch.no_grad():
            assert net(torch.randn(1, bands, size, size)).shape == (1, 6, size, size)
    net.train()
    logits, aux = net(torch.randn(2, bands, 64, 64))
    assert logits.shape == (2, 6, 64, 64) and len(aux) == 2
    assert {a.shape[-1] for a in aux} == {4, 2}  # 1/16 and 1/32 auxiliary heads


def test_extremes_and_model_registry():
    space = FasterSegSearchSpace.from_preset("tiny")
    nparams = lambda a: sum(p.numel() for p in space.build(a).parameters())  # noqa: E731
    assert nparams(space.min_arch()) < nparams(space.sample(np.random.default_rng(0))) < nparams(space.max_arch())
    spec = {"kind": "fasterseg", "arch": space.min_arch(), "in_channels": 4, "num_classes": 3}
    assert build_model(spec).eval()(torch.randn(1, 4, 32, 32)).shape == (1, 3, 32, 32)
    with pytest.raises(TerraLiteError, match="'arch'"):
        build_model({"kind": "fasterseg", "in_channels": 3, "num_classes": 8})


def test_shared_cells_computed_once():
    space = FasterSegSearchSpace.from_preset("tiny")
    arch = space.min_arch()
    a, b = arch["branches"]
    # make both branches start with the same two stride-1 cells at 1/8
    first = [{"op": "conv", "scale": 8, "down": False, "width": 6}, {"op": "zoomed_conv", "scale": 8, "down": False, "width": 4}]
    a["cells"] = first + a["cells"]
    b["cells"] = [dict(c) for c in first] + b["cells"]
    net = space.build(arch)
    assert net.branch_cells[0][:2] == net.branch_cells[1][:2]
    assert net.branch_cells[0][2] != net.branch_cells[1][2] or a["cells"][2] == b["cells"][2]
    assert len(net.cells) == len(set(net.branch_cells[0]) | set(net.branch_cells[1]))
    assert len(net.cells) <= len(a["cells"]) + len(b["cells"]) - 2
    assert net.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 8, 64, 64)


def test_preset_and_config_errors():
    assert preset_config("oem").layers == 16 and preset_config("oem").F == 12
    with pytest.raises(TerraLiteError, match="unknown FasterSeg preset 'big'"):
        preset_config("big")
    with pytest.raises(TerraLiteError, match="'layers'"):
        preset_config("tiny", layers=3)


def test_weights_of_the_old_halving_fusion_are_refused_clearly():
    space = FasterSegSearchSpace.from_preset("tiny")
    net = space.build(space.min_arch())
    state = net.state_dict()
    c = state["fusion_head.fusion.0.weight"].shape[0]
    net.load_state_dict(state)  # today's weights load
    state["fusion_head.fusion.0.weight"] = torch.zeros(c // 2, c, 1, 1)  # the pre-fix layout: C → C/2
    with pytest.raises(TerraLiteError, match=rf"built before the fusion fix \(fusion conv {c} → {c // 2} channels.*terralite train --model"):
        net.load_state_dict(state)


@pytest.mark.parametrize("size,kernel,stride", [(1, 3, 1), (2, 3, 1), (2, 3, 2), (2, 1, 2), (1, 1, 1)])
def test_small_input_conv_equals_conv2d(size, kernel, stride):
    """The im2col path the slimmable conv takes at 1/32 of a search crop gives F.conv2d's values and gradients."""
    from terralite.search_spaces.fasterseg.slimmable import SMALL_INPUT_PIXELS, SlimConv

    assert size * size <= SMALL_INPUT_PIXELS
    torch.manual_seed(0)
    conv = SlimConv(24, 16, kernel, stride)
    x = torch.randn(3, 20, size, size, requires_grad=True)
    out = conv(x, 12)
    ref = torch.nn.functional.conv2d(x, conv.weight[:12, :20], None, stride, kernel // 2)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), (x, conv.weight))
    ref_grads = torch.autograd.grad(ref.square().sum(), (x, conv.weight))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)
