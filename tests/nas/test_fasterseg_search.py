"""FasterSeg search: refusal of foreign latency tables, and a tiny search end to end (slow)."""

import csv
import json

import pytest
import torch

from nas.fasterseg.latency import table_conditions, table_entries
from nas.latency_table import LatencyTable
from search_spaces.fasterseg.arch import load_arch
from search_spaces.fasterseg.config import preset_config
from search_spaces.fasterseg.space import FasterSegSearchSpace
from terralite.cli import SUBCOMMANDS, main
from terralite.models import build_model, load_spec_file


@pytest.fixture(autouse=True)
def search_command(monkeypatch):
    # `terralite search` is the lead's dispatcher; make sure it is reachable even before it is listed
    monkeypatch.setitem(SUBCOMMANDS, "search", SUBCOMMANDS.get("search", "terralite.cli.search"))


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
    code = main(["search", "fasterseg", "--preset", "huge", "--data", str(data), "--out", str(tmp_path / "r")])
    assert code == 2 and "unknown search preset 'huge'" in capsys.readouterr().err


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
