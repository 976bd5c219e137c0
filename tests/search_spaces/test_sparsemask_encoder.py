"""The SparseMask encoder is the original MobileNetV2 (first bottleneck keeps its expansion conv); torchvision
weights load for every other layer with a report, and checkpoints of the old torchvision layout migrate."""

import logging

import pytest
import torch
import torchvision

from terralite.checkpoint import save_checkpoint
from terralite.models import load_model
from terralite.search_spaces.sparsemask.arch import make_spec, validate_arch
from terralite.search_spaces.sparsemask.encoder import MobileNetV2Encoder, load_torchvision_weights, original_mobilenet_v2_features
from terralite.search_spaces.sparsemask.network import build

EXPANSION_KEYS = ["features.1.conv.0.0.weight", "features.1.conv.0.1.weight", "features.1.conv.0.1.bias",
                  "features.1.conv.0.1.running_mean", "features.1.conv.0.1.running_var", "features.1.conv.0.1.num_batches_tracked"]


def _ours(torchvision_key: str) -> str:
    """Our key of a torchvision ``features.*`` key: the first bottleneck's layers sit one index later."""
    parts = torchvision_key.split(".")
    if parts[1] == "1" and parts[2] == "conv":
        parts[3] = str(int(parts[3]) + 1)
    return ".".join(parts)


def _randomised_torchvision(seed: int = 0) -> torchvision.models.MobileNetV2:
    """A torchvision mobilenet_v2 with non-trivial BN statistics, so that equal tensors mean loaded ones."""
    torch.manual_seed(seed)
    net = torchvision.models.mobilenet_v2(weights=None)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.2)
    return net.eval()


def test_first_bottleneck_keeps_the_expansion_conv():
    block = original_mobilenet_v2_features()[1].conv
    expansion, depthwise = block[0], block[1]
    assert (expansion[0].in_channels, expansion[0].out_channels, expansion[0].kernel_size, expansion[0].groups) == (32, 32, (1, 1), 1)
    assert isinstance(expansion[1], torch.nn.BatchNorm2d) and isinstance(expansion[2], torch.nn.ReLU6)
    assert depthwise[0].groups == 32 and depthwise[0].kernel_size == (3, 3)
    tv = sum(p.numel() for p in torchvision.models.mobilenet_v2(weights=None).features.parameters())
    assert sum(p.numel() for p in MobileNetV2Encoder().parameters()) == tv + 32 * 32 + 2 * 32


def test_torchvision_weights_load_every_other_layer(tmp_path, caplog):
    reference = _randomised_torchvision()
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(reference.state_dict(), path)
    features = original_mobilenet_v2_features()
    with caplog.at_level(logging.WARNING):
        not_loaded = load_torchvision_weights(features, path)
    assert not_loaded == EXPANSION_KEYS
    assert "no first-bottleneck expansion conv" in caplog.text and "mobilenet_v2.pth" in caplog.text
    ours = {"features." + k: v for k, v in features.state_dict().items()}
    for key, value in reference.features.state_dict().items():
        assert torch.equal(ours[_ours("features." + key)], value), key
    assert set(ours) - {_ours("features." + k) for k in reference.features.state_dict()} == set(EXPANSION_KEYS)
    # the unloaded expansion is the identity: in eval the encoder computes what torchvision's does
    encoder = MobileNetV2Encoder(weights=path).eval()
    assert encoder.not_loaded == EXPANSION_KEYS
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        taps = encoder(x)
        expected = reference.features[:2](x)  # the stem and the first bottleneck: tap 7
        assert torch.allclose(taps[7], expected, atol=1e-5)
        assert torch.allclose(taps[1], reference.features[:18](x), atol=1e-4)


def test_original_layout_file_loads_whole(tmp_path):
    source = MobileNetV2Encoder()
    path = tmp_path / "original.pth"
    torch.save(source.state_dict(), path)  # keys features.*
    features = original_mobilenet_v2_features()
    assert load_torchvision_weights(features, path) == []
    assert all(torch.equal(v, source.features.state_dict()[k]) for k, v in features.state_dict().items())


def test_weights_of_another_network_are_refused(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    from terralite.errors import TerraLiteError

    with pytest.raises(TerraLiteError, match="resnet.pth does not match torchvision mobilenet_v2"):
        MobileNetV2Encoder(weights=path)


ARCH = validate_arch({"stages": {**{f"stage{s}": [] for s in range(9)}, "stage7": ["tap5", "tap7"], "stage8": ["tap8", "up8"]}})


@pytest.mark.parametrize("bands", [3, 5])
def test_old_layout_checkpoint_migrates_with_unchanged_outputs(tmp_path, caplog, bands):
    """A checkpoint saved before the encoder kept the expansion conv (torchvision's first bottleneck)."""
    torch.manual_seed(1)
    old = build(ARCH, bands, 8)
    old.encoder.features[1] = _randomised_torchvision(2).features[1]  # the layout of the old encoder
    spec = make_spec(ARCH, in_channels=bands, num_classes=8)
    path = save_checkpoint(tmp_path / "old.pt", spec, old.state_dict())
    assert "encoder.features.1.conv.3.weight" not in old.state_dict()
    with caplog.at_level(logging.WARNING):
        model, _, _ = load_model(str(path))
    assert "old torchvision layout" in caplog.text and "encoder.features.1.conv.0." in caplog.text
    x = torch.randn(2, bands, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), old.eval()(x), atol=1e-5)
