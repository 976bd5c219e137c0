"""The eval-mode SparseMask network (encoder and decoder BN folded, ReLU6 in place, tap convs stacked, same-size
inputs summed before one resize, NHWC) gives the logits of the stages as the architecture states them."""

import pytest
import torch
import torch.nn.functional as F

from terralite.models import build_model
from terralite.search_spaces.sparsemask.topology import TAP, input_name

# several taps of one size in one stage (tap0..tap2 are all stride 32), the pool input, skips at every depth
ARCH = {"version": 1, "encoder": "mobilenet_v2", "decoder_channels": 16, "final_upsample": "bilinear_x2",
        "stages": {"stage0": ["tap0", "up0"], "stage1": ["tap0", "tap1", "up1"], "stage2": ["tap2", "up1", "up2"],
                   "stage3": ["tap3", "up3"], "stage4": ["up4"], "stage5": ["tap5", "up5", "up2"], "stage6": ["tap0", "up6"],
                   "stage7": ["tap7", "up7"], "stage8": ["tap8", "up8", "up1"]}}


def _reference(net, x):
    """The architecture's stages literally: per input ReLU6 → conv → resize, summed, BN (eval statistics)."""
    height, width = x.shape[-2:]
    taps = net.encoder(x)
    features = {input_name(TAP, j): F.relu6(t) for j, t in enumerate(taps) if t is not None}
    if net.uses_pool:
        features["up0"] = F.relu6(F.adaptive_avg_pool2d(taps[0], 1))
    last = net._decode(features, height, width)
    return F.interpolate(net.head(last), size=(height, width), mode="bilinear", align_corners=True)


def _far_from_identity(module):
    """BN statistics and affine parameters far from the identity, so that a wrong fold shows."""
    for bn in module.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.3, 0.3)


@pytest.mark.parametrize("arch_stages", [ARCH["stages"], None])
def test_fast_decoder_equals_reference(arch_stages):
    arch = dict(ARCH)
    if arch_stages is None:  # the committed reference: two inputs per stage
        arch["stages"] = {f"stage{s}": ["tap0", f"up{s}"] for s in range(9)}
    torch.manual_seed(0)
    net = build_model({"kind": "sparsemask", "arch": arch, "in_channels": 3, "num_classes": 5})
    _far_from_identity(net)
    net.eval()
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        fast, reference = net(x), _reference(net, x)
    assert fast.shape == (2, 5, 96, 128) and fast.is_contiguous()
    torch.testing.assert_close(fast, reference, atol=1e-4, rtol=1e-4)
    assert reference.abs().max() > 1.0  # not a trivially small output


@pytest.mark.parametrize("fused", [True, False])
def test_folded_encoder_gives_every_tap(fused, monkeypatch):
    """The encoder's eval path with BN folded into the convs and ReLU6 fused into oneDNN's conv (where PyTorch has
    that kernel) or applied in place: the same nine taps."""
    from terralite.search_spaces.sparsemask import encoder as encoder_module
    from terralite.search_spaces.sparsemask.encoder import MobileNetV2Encoder

    if fused and not encoder_module._FUSED_CONV:
        pytest.skip("this PyTorch build has no oneDNN fused convolution")
    monkeypatch.setattr(encoder_module, "_FUSED_CONV", fused)

    torch.manual_seed(0)
    encoder = MobileNetV2Encoder()
    _far_from_identity(encoder)
    encoder.eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        folded, stated = encoder(x, folded=encoder.folded_weights()), encoder(x)
    assert len(folded) == len(stated) == 9
    for tap, (a, b) in enumerate(zip(folded, stated)):
        assert a.shape == b.shape, tap
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=f"tap {tap}")


def test_folded_weights_follow_changed_parameters():
    """The eval path keeps its folded weights between calls, and folds again after the weights change."""
    torch.manual_seed(0)
    net = build_model({"kind": "sparsemask", "arch": ARCH, "in_channels": 3, "num_classes": 5}).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        first = net(x)
        kept = net._folded_cache[1]
        assert torch.equal(net(x), first) and net._folded_cache[1] is kept  # nothing changed: not folded again
        net.head.bias.add_(1.0)  # an in-place change, as an optimiser step makes
        net.encoder.features[0][1].running_var.mul_(4.0)
        changed = net(x)
        reference = _reference(net, x)
    assert net._folded_cache[1] is not kept
    torch.testing.assert_close(changed, reference, atol=1e-4, rtol=1e-4)
    other = build_model({"kind": "sparsemask", "arch": ARCH, "in_channels": 3, "num_classes": 5}).eval()
    other.load_state_dict(net.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(other(x), changed, atol=1e-5, rtol=1e-5)


def test_training_mode_keeps_the_batch_statistics_path():
    torch.manual_seed(0)
    net = build_model({"kind": "sparsemask", "arch": ARCH, "in_channels": 3, "num_classes": 5}).train()
    x = torch.randn(2, 3, 64, 64)
    out = net(x)
    out.sum().backward()  # gradients flow through the stated (unfolded) stages
    stage = net.decoder["stage1"]
    assert stage.bn.weight.grad is not None and all(c.weight.grad is not None for c in stage.convs.values())
