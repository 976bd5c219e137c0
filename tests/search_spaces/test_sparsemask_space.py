"""SparseMask search space: topology, encoder taps, supernet gates, derived networks, cost model, ONNX."""

import numpy as np
import pytest
import torch
import torchvision

from terralite.search_spaces.sparsemask.arch import max_arch, min_arch, num_connections, sample_arch, validate_arch
from terralite.search_spaces.sparsemask.cost import CostModel, fvcore_macs
from terralite.search_spaces.sparsemask.encoder import MobileNetV2Encoder
from terralite.search_spaces.sparsemask.network import build, build_from_spec
from terralite.search_spaces.sparsemask.space import SparseMaskSearchSpace
from terralite.search_spaces.sparsemask.supernet import SparseMaskSupernet
from terralite.search_spaces.sparsemask.topology import TAP_CHANNELS, TAP_STRIDES, all_connections, candidates
from terralite.errors import TerraLiteError
from terralite.models import build_model


def _arch(**stages):
    full = {f"stage{s}": [] for s in range(9)}
    full.update(stages)
    return validate_arch({"stages": full})


# two inputs per stage: each stage takes the deepest tap and the previous stage (OEM-like density)
TWO_PER_STAGE = _arch(**{f"stage{s}": (["tap0", "up0"] if s == 0 else ["tap0", f"up{s}"]) for s in range(9)})


def test_ninety_connections():
    assert len(all_connections()) == 90
    assert candidates(2) == ["tap0", "tap1", "tap2", "up0", "up1", "up2"]
    assert num_connections(max_arch()) == 90


@pytest.mark.parametrize("bands", [3, 5])
def test_encoder_taps_shapes_and_preactivation(bands):
    encoder = MobileNetV2Encoder(bands).eval()
    taps = encoder(torch.randn(2, bands, 64, 96))
    assert [t.shape[1] for t in taps] == list(TAP_CHANNELS) == [1280, 320, 160, 96, 64, 32, 24, 16, 32]
    assert [64 // t.shape[2] for t in taps] == list(TAP_STRIDES)
    assert [96 // t.shape[3] for t in taps] == list(TAP_STRIDES)
    # taps are taken before activation: the stem tap (after BN) and the last conv tap have negative values
    assert taps[8].min() < 0 and taps[0].min() < 0


def test_encoder_truncated_to_deepest_tap():
    encoder = MobileNetV2Encoder(3, deepest_tap=5)
    taps = encoder(torch.randn(1, 3, 64, 64))
    assert taps[:5] == [None] * 5 and taps[5].shape[1] == 32
    assert len(encoder.features) == 7


def test_encoder_weights_file(tmp_path):
    reference = torchvision.models.mobilenet_v2(weights=None)
    path = tmp_path / "mnv2.pth"
    torch.save(reference.state_dict(), path)
    rgb = MobileNetV2Encoder(3, weights=path)
    assert torch.equal(rgb.features[5].conv[0][0].weight, reference.features[5].conv[0][0].weight)
    five = MobileNetV2Encoder(5, weights=path)
    first = five.features[0][0].weight
    assert first.shape == (32, 5, 3, 3)
    assert torch.equal(first[:, :3], reference.features[0][0].weight)
    assert not torch.equal(first[:, 3], first[:, 0])
    (tmp_path / "bad.pth").write_bytes(b"not a state dict")
    with pytest.raises(TerraLiteError, match="bad.pth is not a readable state dict"):
        MobileNetV2Encoder(3, weights=tmp_path / "bad.pth")
    with pytest.raises(TerraLiteError, match="missing.pth does not exist"):
        MobileNetV2Encoder(3, weights=tmp_path / "missing.pth")


def test_supernet_gate_noise_and_clamp():
    torch.manual_seed(0)
    net = SparseMaskSupernet(3, 4)
    assert len(net.gate_parameters()) == 9 and sum(g.numel() for g in net.gate_parameters()) == 90
    assert np.allclose(net.gate_values()[8], 1.0)
    x = torch.randn(2, 3, 64, 64)
    net.train()
    out = net(x)
    assert out.shape == (2, 4, 64, 64)
    noisy = torch.cat([g.flatten() for g in net.last_gates])
    assert noisy.min() >= 0 and noisy.max() <= 2
    assert 0.02 < (noisy - 1).std() < 0.2  # N(0, 0.1²) noise around the initial 1.0
    values = net.gate_values()
    values[8, 0, 0], values[8, 1, 1] = 3.5, -0.7
    net.set_gate_values(values)
    net.eval()
    with torch.no_grad():
        net(x)
    assert net.last_gates[8][0, 0] == 2.0 and net.last_gates[8][1, 1] == 0.0  # eval: clamped, no noise
    assert torch.equal(net.last_gates[3], torch.ones(4, 2))
    net.clamp_gates_()
    assert net.gate_values()[8, 0, 0] == 2.0 and net.gate_values()[8, 1, 1] == 0.0


def test_all_connections_build_matches_supernet_size():
    supernet = SparseMaskSupernet(3, 8)
    built = build(max_arch(), 3, 8)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # the built network has the supernet's convs, stage BNs and head; only the 90 gates are gone
    # (the supernet's per-connection BNs have no parameters)
    assert count(built) == count(supernet) - 90
    assert sum(p.numel() for p in built.decoder.parameters()) == sum(p.numel() for p in supernet.decoder_parameters()) - sum(p.numel() for p in supernet.head.parameters())


@pytest.mark.parametrize("bands", [3, 5])
def test_build_at_64_px(bands):
    spec = {"kind": "sparsemask", "in_channels": bands, "num_classes": 8, "arch": sample_arch(3)}
    model = build_model(spec).eval()
    with torch.no_grad():
        assert model(torch.randn(1, bands, 64, 64)).shape == (1, 8, 64, 64)
        assert model(torch.randn(2, bands, 96, 64)).shape == (2, 8, 96, 64)


def test_derived_network_has_only_live_parts():
    model = build(TWO_PER_STAGE)
    assert sorted(model.decoder) == [f"stage{s}" for s in range(9)]
    assert sorted(model.decoder["stage4"].convs) == ["tap0", "up4"]
    assert not any("gate" in name for name, _ in model.named_parameters())
    small = build(min_arch())
    assert list(small.decoder) == ["stage8"] and list(small.decoder["stage8"].convs) == ["tap8"]
    assert len(small.encoder.features) == 1  # the stem alone
    encoder_names = {n for n, _ in model.named_parameters() if n.startswith("encoder.")}
    decoder = list(model.decoder_parameters())
    assert len(encoder_names) + len(decoder) == len(list(model.parameters()))
    assert {id(p) for p in decoder}.isdisjoint({id(p) for n, p in model.named_parameters() if n in encoder_names})


def test_build_from_spec_without_arch():
    with pytest.raises(TerraLiteError, match="needs an 'arch' field"):
        build_from_spec({"kind": "sparsemask", "in_channels": 3, "num_classes": 8})


def test_cost_model_equals_fvcore():
    for arch in (TWO_PER_STAGE, sample_arch(5)):
        model = build(arch, 3, 8)
        model_cost = CostModel(64, 96, in_channels=3, num_classes=8)
        assert model_cost.arch_macs(arch) == fvcore_macs(model, torch.zeros(1, 3, 64, 96))
        assert model_cost.arch_params(arch) == sum(p.numel() for p in model.parameters())


def test_oem_like_size_at_1024():
    """About two inputs per stage lands near the OEM authors' 3 M params / 10 GMACs at 1024x1024."""
    cost = CostModel(1024)
    assert 2.5e6 < cost.arch_params(TWO_PER_STAGE) < 3.5e6
    assert 8.0 < cost.arch_gmacs(TWO_PER_STAGE) < 12.0
    assert cost.arch_gmacs(min_arch()) < cost.arch_gmacs(TWO_PER_STAGE) < cost.arch_gmacs(max_arch())


def test_search_space_object():
    space = SparseMaskSearchSpace(3, 8)
    assert sum(len(inputs) for inputs in space.choices["stages"].values()) == 90
    gates = np.zeros((9, 9, 2))
    gates[8, 0, 0] = gates[8, 8, 0] = 1.0
    arch = space.derive(gates)
    assert arch["stages"]["stage8"] == ["tap0", "tap8"] and num_connections(arch) == 2
    assert num_connections(space.sample(np.random.default_rng(1))) >= 1


@pytest.mark.parametrize("size", [64, 1024])
def test_min_arch_is_the_cheapest_path_into_the_output(size):
    # every architecture feeds stage8 from a tap or from up0 (directly or through other stages, which only
    # adds convs): no one-connection network is cheaper than min_arch in parameters or in MACs
    cost = CostModel(size)
    floor = cost.arch_params(min_arch()), cost.arch_macs(min_arch())
    for name in [f"tap{j}" for j in range(9)] + ["up0"]:
        arch = _arch(stage8=[name])
        assert cost.arch_params(arch) >= floor[0] and cost.arch_macs(arch) >= floor[1]


def test_encoder_weights_are_a_build_argument(tmp_path):
    path = tmp_path / "mnv2.pth"
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), path)
    model = SparseMaskSearchSpace(4, 8).build(TWO_PER_STAGE, encoder_weights=path)
    reference = torch.load(path, weights_only=True)
    assert torch.equal(model.encoder.features[5].conv[0][0].weight, reference["features.5.conv.0.0.weight"])
    assert "encoder_weights" not in model.arch


def test_cost_counts_leave_the_global_rng_alone():
    # the first count builds (randomly initialises) an encoder at a point that depends on the process
    # history; a resumed search must still draw what an uninterrupted one draws
    from terralite.search_spaces.sparsemask import cost as cost_module

    cost_module._encoder_block_counts.cache_clear()
    state = torch.get_rng_state()
    CostModel(64, in_channels=5).arch_macs(TWO_PER_STAGE)
    assert torch.equal(torch.get_rng_state(), state)


def test_onnx_matches_pytorch(tmp_path):
    export = pytest.importorskip("terralite.benchmark.export")
    model = build(TWO_PER_STAGE, 4, 8).eval()
    path = export.export_onnx(model, tmp_path / "sm.onnx", size=64, in_channels=4)
    x = torch.randn(1, 4, 64, 64)
    assert export.verify_onnx(model, path, x) < 1e-4
