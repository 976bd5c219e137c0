"""FasterSeg search: refusal of foreign latency tables; a tiny search end to end, and under torchrun (slow)."""

import csv
import json

import pytest
import torch

from terralite.nas.fasterseg.latency import table_conditions, table_entries
from terralite.nas.latency_table import LatencyTable
from terralite.search_spaces.fasterseg.arch import load_arch
from terralite.search_spaces.fasterseg.config import preset_config
from terralite.search_spaces.fasterseg.space import FasterSegSearchSpace
from terralite.checkpoint import load_checkpoint
from terralite.cli import main
from terralite.data.classes import NUM_CLASSES
from terralite.data.openearthmap import OpenEarthMapDataset
from terralite.engine.presets import get_preset
from terralite.engine.train import train
from terralite.metrics import ConfusionMatrix
from terralite.models import build_model, load_spec_file


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from terralite.data.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("oem") / "data", tiles=20, size=64, seed=0)


def test_search_refuses_table_of_other_conditions(data, tmp_path, capsys):
    space = FasterSegSearchSpace(preset_config("tiny", widths=[6, 12]))
    # a table of the right space, but timed with torch at 128 px: the tiny preset targets onnxruntime at 64 px
    cond = table_conditions(space, 128, torch.device("cpu"), "torch")
    lut = LatencyTable(cond, {k: 1.0 for k in table_entries(space, 128)}).save(tmp_path / "lut.json")
    code = main(["search", "fasterseg", "--preset", "tiny", "--data", str(data), "--out", str(tmp_path / "run"), "--lut", str(lut)])
    err = capsys.readouterr().err
    assert code == 2
    assert "was measured under other conditions" in err and "runtime='torch' (needed 'onnxruntime')" in err and "size=128 (needed 64)" in err


def test_search_rejects_bad_config(data, tmp_path, capsys):
    code = main(["search", "fasterseg", "--preset", "tiny", "--data", str(data), "--out", str(tmp_path / "r"), "--crop", "50"])
    assert code == 2 and "'crop' must be divisible by 32" in capsys.readouterr().err
    code = main(["search", "fasterseg", "--preset", "tiny", "--data", str(data), "--out", str(tmp_path / "r"), "--batch-size", "64"])
    err = capsys.readouterr().err
    assert code == 2 and "must hold at least one batch of 64; lower batch_size" in err and str(data) in err
    code = main(["search", "fasterseg", "--preset", "huge", "--data", str(data), "--out", str(tmp_path / "r")])
    assert code == 2 and "unknown search preset 'huge'" in capsys.readouterr().err


def test_search_presets_resolve_to_valid_configs():
    from terralite.nas.fasterseg.config import SEARCH_PRESETS, FasterSegSearchConfig
    from terralite.config import resolve_config

    for name, preset in SEARCH_PRESETS.items():
        cfg = resolve_config(FasterSegSearchConfig, None, ["data=d", "out=o"], base=preset).validate()
        assert preset_config(cfg.preset, **cfg.space).layers >= 6, name
    full = resolve_config(FasterSegSearchConfig, None, ["data=d", "out=o"], base=SEARCH_PRESETS["oem"])
    cpu = resolve_config(FasterSegSearchConfig, None, ["data=d", "out=o"], base=SEARCH_PRESETS["oem-cpu"])
    # the CPU schedule searches the same space and target as the authors' schedule, only shorter and on small crops
    assert (cpu.preset, cpu.space, cpu.target) == (full.preset, full.space, full.target)
    assert (full.crop, full.warmup_epochs, full.epochs, full.lr_arch) == (512, 20, 30, 3e-4)
    assert (cpu.crop, cpu.warmup_epochs, cpu.epochs, cpu.steps_per_epoch, cpu.lr_arch) == (64, 6, 30, 4, 0.025)


@pytest.mark.slow
def test_tiny_search_end_to_end_and_resume(data, tmp_path):
    run = tmp_path / "run"
    args = ["search", "fasterseg", "--preset", "tiny", "--data", str(data), "--out", str(run),
            "--set", "target.runtime=torch", "--set", "steps_per_epoch=2", "--set", "val_images=2"]
    assert main(args) == 0
    for role in ("teacher", "student"):
        spec = load_spec_file(run / f"{role}.json")
        assert spec["kind"] == "fasterseg" and spec["in_channels"] == 3 and spec["num_classes"] == 8
        load_arch(run / f"{role}.json")  # validates
        net = build_model(spec).eval()
        assert net(torch.randn(1, 3, 64, 64)).shape == (1, 8, 64, 64)
        assert (run / "arch" / f"epoch_002_{role}.json").is_file()
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert [r["phase"] for r in rows] == ["warmup", "search"]
    assert all(float(r["student_ms"]) > 0 for r in rows)
    assert json.loads((run / "lut.json").read_text())["conditions"]["runtime"] == "torch"
    assert (run / "arch_evolution.png").stat().st_size > 0
    # resume: one more search epoch continues from the saved state
    assert main(args + ["--resume", "--epochs", "2"]) == 0
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert main(args) == 2  # a second start into the same folder is refused

    # the derived student trains through the engine with the FasterSeg recipe and beats chance three times over
    # (chance: the mIoU of predicting the training split's most frequent class everywhere, about 0.02 here)
    cfg = get_preset("fasterseg", model=str(run / "student.json"), data=str(data), out=str(tmp_path / "retrain"),
                     epochs=60, batch_size=4, crop=64, device="cpu", checkpoint_every=0)
    cfg.optim.lr = 0.05
    train(cfg)
    counts = torch.bincount(torch.cat([label.flatten() for _, label in OpenEarthMapDataset(data, "train")]))
    chance = ConfusionMatrix(NUM_CLASSES)
    for _, label in OpenEarthMapDataset(data, "val"):
        chance.update(torch.full_like(label, int(counts[:NUM_CLASSES].argmax())), label)
    assert load_checkpoint(tmp_path / "retrain" / "best.pt")["metrics"]["val_miou"] > 3 * chance.compute()["miou"]


@pytest.mark.slow
def test_tiny_search_under_torchrun(data, tmp_path, torchrun):
    """Two CPU ranks (gloo): one latency table measured once, by rank 0; one log; valid architectures."""
    run = tmp_path / "ddp"
    done = torchrun(["-m", "terralite", "search", "fasterseg", "--preset", "tiny", "--data", str(data), "--out", str(run),
                     "--device", "cpu", "--batch-size", "4", "--set", "target.runtime=torch",
                     "--set", "steps_per_epoch=2", "--set", "val_images=2"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("measuring a latency table") == 1
    assert done.stderr.count("epoch 2/2") == 1  # only rank 0 reports and writes
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert [r["phase"] for r in rows] == ["warmup", "search"]
    assert 0.0 <= float(rows[-1]["student_miou"]) <= 1.0
    for role in ("teacher", "student"):
        net = build_model(load_spec_file(run / f"{role}.json")).eval()
        assert net(torch.randn(1, 3, 64, 64)).shape == (1, 8, 64, 64)
    state = load_checkpoint(run / "last.pt")
    assert not any(k.startswith("module.") for k in state["state_dict"])  # the unwrapped supernet is saved
