"""Structured pruning: smaller networks with the same output contract, rebuilt from their spec alone."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from terralite.compress.pruned_model import pruned_spec
from terralite.compress.pruning import count_parameters, prune_model, step_ratios
from terralite.checkpoint import save_checkpoint
from terralite.errors import TerraLiteError
from terralite.models import build_model

FASTERSEG_ARCH = {
    "F": 4, "width_base": 12, "stem_width": 8, "head_width": 8,
    "branches": [
        {"scale": 32, "cells": [
            {"op": "conv", "scale": 8, "down": False, "width": 8},
            {"op": "zoomed_conv", "scale": 8, "down": True, "width": 10},
            {"op": "conv_2x", "scale": 16, "down": True, "width": 12},
            {"op": "zoomed_conv_2x", "scale": 32, "down": False, "width": 8}]},
        {"scale": 16, "cells": [
            {"op": "conv", "scale": 8, "down": False, "width": 8},
            {"op": "zoomed_conv", "scale": 8, "down": True, "width": 10},
            {"op": "zoomed_conv_2x", "scale": 16, "down": False, "width": 8}]},
    ],
}


def _prune(spec, ratio=0.5, **kwargs):
    torch.manual_seed(0)
    model = build_model(spec).eval()
    before = count_parameters(model, conv_only=True)
    history = prune_model(model, in_channels=spec["in_channels"], num_classes=spec["num_classes"], ratio=ratio, **kwargs)
    return model, pruned_spec(spec, history, {"ratio": ratio}), count_parameters(model, conv_only=True) / before


@pytest.fixture(scope="module")
def pruned_unet():
    spec = {"kind": "baseline", "name": "unet-resnet18", "in_channels": 3, "num_classes": 8}
    return _prune(spec)


def test_unet_half_channels_leave_a_quarter_of_conv_params(pruned_unet):
    model, spec, fraction = pruned_unet
    assert 0.22 < fraction < 0.30
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert model(x).shape == (1, 8, 64, 96)
    # the U-Net skip concatenations stayed consistent: decoder convs read what the encoder now gives
    assert model.segmentation_head[0].out_channels == 8
    assert spec["kind"] == "pruned" and spec["base"]["name"] == "unet-resnet18"
    assert json.loads(json.dumps(spec)) == spec  # plain JSON, no tensors or modules


def test_pruned_checkpoint_reloads_in_a_fresh_process(pruned_unet, tmp_path):
    model, spec, _ = pruned_unet
    ckpt = save_checkpoint(tmp_path / "pruned.pt", spec, model.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.save({"x": x, "y": model(x)}, tmp_path / "io.pt")
    script = textwrap.dedent(f"""
        import torch
        from terralite.models import load_model
        model, spec, _ = load_model({str(ckpt)!r})
        io = torch.load({str(tmp_path / 'io.pt')!r})
        with torch.no_grad():
            print(float((model(io["x"]) - io["y"]).abs().max()))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip().splitlines()[-1]) < 1e-5


def test_pruned_unet_exports_to_onnx_with_the_same_output(pruned_unet, tmp_path):
    import onnxruntime as ort

    from terralite.benchmark.export import export_onnx

    model, _, _ = pruned_unet
    path = export_onnx(model, tmp_path / "pruned.onnx", 64, 3)
    x = torch.randn(1, 3, 64, 64)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == want.shape == (1, 8, 64, 64)
    assert abs(got - want).max() < 1e-3


def test_fasterseg_cells_prune_with_aux_heads():
    spec = {"kind": "fasterseg", "label": "tiny", "arch": FASTERSEG_ARCH, "in_channels": 4, "num_classes": 8}
    model, pspec, fraction = _prune(spec, round_to=4)
    assert 0.20 < fraction < 0.32
    # the train-mode graph (auxiliary heads on concatenated 1/16 and 1/32 features) was pruned consistently
    model.train()
    logits, aux = model(torch.randn(2, 4, 64, 64))
    assert logits.shape == (2, 8, 64, 64) and [a.shape[1] for a in aux] == [8, 8]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels != 8]
    assert all(c.out_channels % 4 == 0 for c in convs)
    rebuilt = build_model(pspec).eval()
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(1, 4, 96, 64)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), model.eval()(x), atol=1e-6)


def test_sparsemask_stage_sums_prune():
    arch_mod = pytest.importorskip("terralite.search_spaces.sparsemask.arch")
    spec = arch_mod.make_spec(arch_mod.sample_arch(0), 3, 8, label="sm")
    model, pspec, fraction = _prune(spec)
    # 1x1 and dense convs shrink to about a quarter, depthwise convs to a half
    assert 0.25 < fraction < 0.45
    rebuilt = build_model(pspec).eval()
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 8, 64, 96)
        assert torch.allclose(rebuilt(x), out, atol=1e-6)


def test_repruning_extends_the_history(pruned_unet):
    model, spec, _ = pruned_unet
    again = pruned_spec(spec, [["encoder.conv1", True, [0]]], {"ratio": 0.1})
    assert again["base"] == spec["base"]
    assert len(again["history"]) == len(spec["history"]) + 1
    assert [r["ratio"] for r in again["pruning"]] == [0.5, 0.1]


def test_step_ratios_compound_to_the_target():
    ratios = step_ratios(0.5, 3)
    kept = 1.0
    for r in ratios:
        kept *= 1 - r
    assert kept == pytest.approx(0.5)
    assert ratios[0] == pytest.approx(1 / 6)


@pytest.mark.parametrize("ratio", [0.0, 1.0, 1.5, -0.2])
def test_ratio_outside_open_interval_is_refused(ratio):
    with pytest.raises(TerraLiteError, match="strictly between 0 and 1"):
        step_ratios(ratio, 1)


def test_taylor_importance_ranks_with_gradients_of_main_and_aux_heads():
    spec = {"kind": "fasterseg", "arch": FASTERSEG_ARCH, "in_channels": 3, "num_classes": 8}
    batches = [(torch.randn(2, 3, 64, 64), torch.randint(0, 8, (2, 64, 64)))]
    model, _, fraction = _prune(spec, ratio=0.5, importance="taylor", global_pruning=True, gradient_batches=batches)
    assert 0.05 < fraction < 0.6
    assert all(p.grad is None for p in model.parameters())  # the ranking gradients are not left behind
    model.train()
    assert [a.shape[1] for a in model(torch.randn(2, 3, 64, 64))[1]] == [8, 8]


def test_taylor_importance_needs_batches():
    model = build_model({"kind": "fasterseg", "arch": FASTERSEG_ARCH, "in_channels": 3, "num_classes": 8})
    with pytest.raises(TerraLiteError, match="labelled data"):
        prune_model(model, in_channels=3, num_classes=8, ratio=0.3, importance="taylor")
