"""Train the tiny baseline on the synthetic dataset, then evaluate it through the CLI."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from terralite.checkpoint import load_checkpoint, save_checkpoint
from terralite.cli import main
from terralite.data.classes import CLASS_NAMES, label_to_train_id
from terralite.data.openearthmap import read_split_list, sample_paths
from terralite.data.raster import read_label
from terralite.engine.presets import get_preset
from terralite.engine.train import train
from terralite.models import build_model


@pytest.fixture(scope="module")
def trained(synthetic_root, tiny_model_name, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    cfg = get_preset("unet", model=tiny_model_name, data=str(synthetic_root), out=str(out), epochs=4, batch_size=2,
                     crop=64, device="cpu", checkpoint_every=0)
    cfg.optim.lr = 0.02
    assert train(cfg) == out
    return out


def test_run_folder_log_and_learning(trained):
    assert {"config.yaml", "log.csv", "run.log", "last.pt", "best.pt"} <= {p.name for p in trained.iterdir()}
    rows = [line.split(",") for line in (trained / "log.csv").read_text().splitlines()]
    assert rows[0] == ["epoch", "train_loss", "val_miou", "lr", "seconds"]
    losses = [float(r[1]) for r in rows[1:]]
    mious = [float(r[2]) for r in rows[1:]]
    assert len(rows) == 5 and losses[-1] < losses[0]
    assert mious[-1] > 0.2  # chance level for 8 classes is far lower
    assert "epoch 4/4" in (trained / "run.log").read_text() and "ETA" in (trained / "run.log").read_text()
    assert "lr: 0.02" in (trained / "config.yaml").read_text()


def test_checkpoint_contents_load_weights_only(trained):
    ckpt = load_checkpoint(trained / "last.pt")  # torch.load(weights_only=True) inside
    assert {"spec", "state_dict", "optimizer", "scheduler", "scaler", "epoch", "config", "metrics", "input", "rng",
            "step_in_epoch", "versions"} <= set(ckpt)
    assert ckpt["epoch"] == 4 and ckpt["step_in_epoch"] == 0
    assert ckpt["spec"]["in_channels"] == 3 and ckpt["spec"]["num_classes"] == 8
    assert isinstance(ckpt["config"], dict) and ckpt["config"]["optim"]["lr"] == 0.02
    assert len(ckpt["input"]["mean"]) == 3 and isinstance(ckpt["rng"]["torch"], torch.Tensor)
    best = load_checkpoint(trained / "best.pt")
    assert best["metrics"]["val_miou"] == max(float(r.split(",")[2]) for r in (trained / "log.csv").read_text().splitlines()[1:])


def _independent_confusion(root, split, pred_dir):
    cm = np.zeros((8, 8), dtype=np.int64)
    for name in read_split_list(root, split):
        _, label_path = sample_paths(root, name)
        target = label_to_train_id(read_label(label_path))
        pred = np.asarray(Image.open(pred_dir / f"{name[:-4]}.png"))
        valid = target != 255
        np.add.at(cm, (target[valid], pred[valid]), 1)
    return cm


def test_eval_cli_json_matches_saved_predictions(trained, synthetic_root, tmp_path, capsys):
    out_json, preds = tmp_path / "eval.json", tmp_path / "preds"
    rc = main(["eval", str(trained / "best.pt"), "--data", str(synthetic_root), "--split", "val", "--json", str(out_json),
               "--save-predictions", str(preds), "--device", "cpu"])
    assert rc == 0
    result = json.loads(out_json.read_text())
    assert result["classes"] == list(CLASS_NAMES) and len(result["iou"]) == 8 and len(result["f1"]) == 8
    assert result["forward_passes"] == 1 and result["tiles"] == 1
    cm = _independent_confusion(synthetic_root, "val", preds)
    tp, union = np.diag(cm), cm.sum(0) + cm.sum(1) - np.diag(cm)
    assert result["pixels"] == cm.sum()  # ignored pixels never count
    assert result["miou"] == pytest.approx(float(np.mean(tp[union > 0] / union[union > 0])))
    assert result["pixel_accuracy"] == pytest.approx(tp.sum() / cm.sum())
    assert "mIoU" in capsys.readouterr().out


def test_eval_hflip_two_passes_and_differs(trained, synthetic_root, tmp_path):
    from terralite.engine.evaluate import dataset_for_checkpoint, evaluate

    ckpt = load_checkpoint(trained / "last.pt")
    model = build_model(ckpt["spec"])
    model.load_state_dict(ckpt["state_dict"])
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    dataset = dataset_for_checkpoint(ckpt, synthetic_root, "val")
    none = evaluate(model, dataset, "none", "cpu", save_predictions=tmp_path / "none")
    assert len(calls) == 1
    flip = evaluate(model, dataset, "hflip", "cpu", save_predictions=tmp_path / "flip")
    assert len(calls) == 3 and flip["forward_passes"] == 2 and flip["tta"] == "hflip"
    a, b = (np.asarray(Image.open(next((tmp_path / d).iterdir()))) for d in ("none", "flip"))
    assert (a != b).any() and flip["pixels"] == none["pixels"]


def test_sliding_windows_cover_large_inputs(trained, synthetic_root):
    from terralite.engine.evaluate import dataset_for_checkpoint, evaluate

    ckpt = load_checkpoint(trained / "last.pt")
    model = build_model(ckpt["spec"])
    model.load_state_dict(ckpt["state_dict"])
    dataset = dataset_for_checkpoint(ckpt, synthetic_root, "val")
    windowed = evaluate(model, dataset, "none", "cpu", window=32, overlap=0.5)
    assert windowed["pixels"] == evaluate(model, dataset, "none", "cpu")["pixels"]


def test_bad_inputs_are_one_line_errors(trained, synthetic_root, tiny_model_name, tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope.pt"), "--data", str(synthetic_root)]) == 2
    assert "nope.pt does not exist" in capsys.readouterr().err

    assert main(["train", "--model", "unet-nonexistent", "--data", str(synthetic_root), "--out", str(tmp_path / "r"),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "unknown baseline 'unet-nonexistent'" in err and "unet-resnet18" in err and len(err.strip().splitlines()) == 1

    four = {"kind": "baseline", "name": tiny_model_name, "in_channels": 4, "num_classes": 8}
    save_checkpoint(tmp_path / "four.pt", four, build_model(four).state_dict())
    assert main(["eval", str(tmp_path / "four.pt"), "--data", str(synthetic_root), "--split", "val"]) == 2
    err = capsys.readouterr().err
    assert "takes 4 input band(s)" in err and "has 3" in err and len(err.strip().splitlines()) == 1
    assert main(["train", "--model", str(tmp_path / "four.pt"), "--data", str(synthetic_root), "--out",
                 str(tmp_path / "r4"), "--device", "cpu", "--epochs", "1"]) == 2
    assert "takes 4 input band(s)" in capsys.readouterr().err


@pytest.mark.parametrize("preset", ["fasterseg", "sparsemask"])
def test_other_presets_run(preset, synthetic_root, tiny_model_name, tmp_path):
    # fasterseg: SGD + OHEM on the main and auxiliary heads; sparsemask: poly + 10x lr on decoder.* parameters
    cfg = get_preset(preset, model=tiny_model_name, data=str(synthetic_root), out=str(tmp_path / "r"), epochs=1,
                     batch_size=2, crop=32, device="cpu", val_split=None, max_steps_per_epoch=1)
    train(cfg)
    ckpt = load_checkpoint(tmp_path / "r" / "last.pt")
    assert ckpt["config"]["preset"] == preset and not (tmp_path / "r" / "best.pt").exists()
    groups = ckpt["optimizer"]["param_groups"]
    if preset == "fasterseg":
        assert [g["lr"] for g in groups] == pytest.approx([0.01 * 0.992])  # one epoch done: decayed once
    else:
        assert [g["initial_lr"] for g in groups] == pytest.approx([0.01, 0.1])  # the decoder group at 10x
        assert [g["lr"] for g in groups] == [0.0, 0.0]  # poly reaches 0 at the last step


def test_distillation_from_a_teacher(trained, synthetic_root, tiny_model_name, tmp_path, capsys):
    from terralite.distillation import kd_kl_loss

    logits = torch.randn(2, 8, 4, 4)
    target = torch.randint(0, 8, (2, 4, 4))
    assert kd_kl_loss(logits, logits, target).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_kl_loss(logits, torch.randn(2, 8, 4, 4), target, tau=2.0).item() > 0
    assert kd_kl_loss(logits, torch.randn(2, 8, 4, 4), torch.full_like(target, 255)).item() == 0.0

    rc = main(["train", "--model", tiny_model_name, "--data", str(synthetic_root), "--out", str(tmp_path / "s"),
               "--teacher", str(trained / "best.pt"), "--kd-tau", "2", "--kd-alpha", "0.5", "--epochs", "1",
               "--batch-size", "2", "--crop", "32", "--device", "cpu", "--set", "max_steps_per_epoch=1"])
    assert rc == 0, capsys.readouterr().err
    cfg = load_checkpoint(tmp_path / "s" / "last.pt")["config"]
    assert (cfg["teacher"], cfg["kd_tau"], cfg["kd_alpha"]) == (str(trained / "best.pt"), 2.0, 0.5)


def test_bf16_autocast_and_gradient_accumulation_on_cpu(synthetic_root, tiny_model_name, tmp_path):
    cfg = get_preset("unet", model=tiny_model_name, data=str(synthetic_root), out=str(tmp_path / "r"), epochs=1,
                     batch_size=1, accumulate=3, crop=32, device="cpu", amp="bf16", val_split=None)
    train(cfg)
    ckpt = load_checkpoint(tmp_path / "r" / "last.pt")
    # 4 tiles, batch 1, 3 micro-batches per step: one full step and one short step
    assert ckpt["scheduler"]["last_epoch"] == 2 and ckpt["config"]["amp"] == "bf16"
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_train_cli_reads_a_yaml_config(synthetic_root, tiny_model_name, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("preset: fasterseg\nloss: {ce: 1.0, lovasz: 0.5}\nmax_steps_per_epoch: 1\nval_split: null\n")
    rc = main(["train", "--model", tiny_model_name, "--data", str(synthetic_root), "--out", str(tmp_path / "r"),
               "--config", str(config), "--epochs", "1", "--batch-size", "2", "--crop", "32", "--device", "cpu",
               "--set", "optim.lr=0.05", "--set", "label=tiny-renamed"])
    assert rc == 0
    saved = (tmp_path / "r" / "config.yaml").read_text()
    assert "preset: fasterseg" in saved and "lovasz: 0.5" in saved and "ohem" not in saved and "lr: 0.05" in saved
    # the label names the trained network in its checkpoint (and so in benchmark rows and leaderboards)
    assert load_checkpoint(tmp_path / "r" / "last.pt")["spec"]["label"] == "tiny-renamed"
