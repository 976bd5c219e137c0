"""``--pretrained FILE``: a weights file the user provides initialises the baselines and the SparseMask encoder."""

import pytest
import torch
import torchvision

from terralite.errors import TerraLiteError
from terralite.models import build_model

RESNET18 = {"kind": "baseline", "name": "unet-resnet18", "in_channels": 3, "num_classes": 8}


def test_baseline_encoder_from_torchvision_weights(tmp_path):
    imagenet = torchvision.models.resnet18(weights=None).state_dict()  # as torchvision saves it, fc included
    torch.save(imagenet, tmp_path / "resnet18.pth")
    model = build_model(RESNET18, pretrained=tmp_path / "resnet18.pth")
    assert torch.equal(model.encoder.conv1.weight, imagenet["conv1.weight"])
    assert torch.equal(model.encoder.layer4[1].bn2.running_var, imagenet["layer4.1.bn2.running_var"])


def test_baseline_from_a_whole_network_state_dict(tmp_path):
    source = build_model(RESNET18)
    torch.save({"state_dict": source.state_dict()}, tmp_path / "net.pt")
    model = build_model(RESNET18, pretrained=tmp_path / "net.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), source.state_dict().values()))


def test_lraspp_backbone_from_torchvision_classifier_weights(tmp_path):
    imagenet = torchvision.models.mobilenet_v3_large(weights=None).state_dict()
    torch.save(imagenet, tmp_path / "mnv3.pth")
    model = build_model({"kind": "baseline", "name": "lraspp-mobilenetv3"}, pretrained=tmp_path / "mnv3.pth")
    assert torch.equal(model.net.backbone["0"][0].weight, imagenet["features.0.0.weight"])


def test_pretrained_errors_are_one_line(tmp_path):
    with pytest.raises(TerraLiteError, match=r"pretrained weights file .*nope.pth does not exist; unet-resnet18 expects .*encoder"):
        build_model(RESNET18, pretrained=tmp_path / "nope.pth")
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(TerraLiteError, match="fits neither baseline 'unet-resnet18' nor its encoder"):
        build_model(RESNET18, pretrained=tmp_path / "resnet34.pth")
    with pytest.raises(TerraLiteError, match="model kind 'fasterseg' takes no pretrained weights; .*baseline, sparsemask"):
        build_model({"kind": "fasterseg", "arch": {}}, pretrained=tmp_path / "resnet34.pth")


def test_sparsemask_encoder_from_torchvision_weights(tmp_path):
    from terralite.search_spaces.sparsemask.space import SparseMaskSearchSpace

    space = SparseMaskSearchSpace(3, 8)
    imagenet = torchvision.models.mobilenet_v2(weights=None).state_dict()
    torch.save(imagenet, tmp_path / "mobilenet_v2.pth")
    spec = {"kind": "sparsemask", "arch": space.max_arch()}
    model = build_model(spec, pretrained=tmp_path / "mobilenet_v2.pth")
    assert torch.equal(model.encoder.features[0][0].weight, imagenet["features.0.0.weight"])
    assert "pretrained" not in spec


def test_train_pretrained_flag(synthetic_root, tmp_path, capsys):
    from terralite.checkpoint import load_checkpoint
    from terralite.cli import main

    args = ["train", "--model", "unet-resnet18", "--data", str(synthetic_root), "--out", str(tmp_path / "run"), "--epochs", "1",
            "--batch-size", "2", "--crop", "32", "--device", "cpu", "--set", "steps_per_epoch=1", "--set", "val_split=null"]
    assert main([*args, "--pretrained", str(tmp_path / "missing.pth")]) == 2
    err = capsys.readouterr().err
    assert "missing.pth does not exist" in err and "expects" in err and len(err.strip().splitlines()) == 1
    imagenet = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(imagenet, tmp_path / "resnet18.pth")
    assert main([*args, "--pretrained", str(tmp_path / "resnet18.pth")]) == 0, capsys.readouterr().err
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["config"]["pretrained"] == str(tmp_path / "resnet18.pth") and "pretrained" not in ckpt["spec"]


def test_search_sparsemask_pretrained_missing_is_named(synthetic_root, tmp_path, capsys):
    from terralite.cli import main

    assert main(["search", "sparsemask", "--preset", "tiny", "--data", str(synthetic_root), "--out", str(tmp_path / "s"),
                 "--pretrained", str(tmp_path / "mobilenet_v2.pth")]) == 2
    err = capsys.readouterr().err
    assert "mobilenet_v2.pth does not exist" in err and "torchvision mobilenet_v2 ImageNet weights" in err
