"""Every registered baseline builds without downloads and honours the output contract at 64x64."""

import pytest
import torch

from terralite.benchmark.zoo import BASELINES, LogitsAtInputSize
from terralite.errors import TerraLiteError
from terralite.models import build_model

# The heaviest encoders take several seconds each at 64 px on a shared 2-core CPU.
HEAVY = {"segformer-mitb5", "segformer-mitb5-d768", "deeplabv3-resnet50"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in BASELINES.names()]
)
def test_baseline_logits_at_input_size(name):
    model = build_model({"kind": "baseline", "name": name, "in_channels": 4, "num_classes": 8}).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 4, 64, 96))
    assert out.shape == (1, 8, 64, 96)
    assert torch.isfinite(out).all()


def test_zoo_has_the_issue_networks():
    required = {
        "unet-vgg11", "unet-resnet18", "unet-resnet34", "unet-efficientnet-b4", "unet-mobilenetv2",
        "deeplabv3-resnet50", "deeplabv3plus-resnet50", "segformer-mitb0", "segformer-mitb5",
        "upernet-convnext-tiny", "lraspp-mobilenetv3",
    }
    assert required <= set(BASELINES.names())


def test_unknown_baseline_lists_names():
    with pytest.raises(TerraLiteError, match="unknown baseline 'unet-nope'.*unet-resnet34"):
        build_model({"kind": "baseline", "name": "unet-nope"})


def test_wrapper_upsamples_and_unwraps_dicts():
    class Half(torch.nn.Module):
        def forward(self, x):
            return {"out": x[:, :, ::2, ::2]}

    out = LogitsAtInputSize(Half())(torch.randn(2, 3, 32, 64))
    assert out.shape == (2, 3, 32, 64)


def test_user_weights_round_trip(tmp_path):
    spec = {"kind": "baseline", "name": "unet-resnet18", "in_channels": 3, "num_classes": 2}
    model = build_model(spec)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "w.pt")
    loaded = build_model({**spec, "weights": str(tmp_path / "w.pt")})
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    with pytest.raises(TerraLiteError, match="does not fit baseline 'unet-resnet18'"):
        build_model({**spec, "num_classes": 5, "weights": str(tmp_path / "w.pt")})
    with pytest.raises(TerraLiteError, match="does not exist"):
        build_model({**spec, "weights": str(tmp_path / "missing.pt")})
