"""No command destroys an input or a folder it did not create (issue 14, item 1): each refused command leaves
the user's file byte-identical, prints one line naming the path and exits non-zero."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from terralite.checkpoint import save_checkpoint
from terralite.cli import main
from terralite.errors import TerraLiteError
from terralite.models import build_model

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from tiny_model import NAME as TINY, register  # noqa: E402  (the engine tests' tiny baseline)

NORM = {"bands": None, "mean": [120.0, 110.0, 100.0], "std": [50.0, 45.0, 40.0]}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    register()
    spec = {"kind": "baseline", "name": TINY, "in_channels": 3, "num_classes": 8}
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", spec, build_model(spec).state_dict(), input=NORM)


def scene(path: Path, size: int = 64) -> Path:
    """A random RGB uint8 GeoTIFF of ``size`` x ``size`` px."""
    image = np.random.default_rng(0).integers(0, 255, (3, size, size), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:32618",
                       transform=from_origin(500000.0, 4200000.0, 0.5, 0.5)) as dst:
        dst.write(image)
    return path


def refused(argv: list[str], capsys, *names: str) -> str:
    assert main([str(a) for a in argv]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for name in names:
        assert name in err
    return err


@pytest.mark.parametrize("option", ["--out", "--preview"])
def test_predict_never_writes_over_its_input_scene(tmp_path, checkpoint, capsys, option):
    image = scene(tmp_path / "x.tif")
    before = digest(image)
    argv = ["predict", checkpoint, image, "--out", tmp_path / "map.tif", "--tile", 64, "--quiet"]
    argv[argv.index("--out") + 1] = image if option == "--out" else tmp_path / "map.tif"
    if option == "--preview":
        argv += ["--preview", image]
    refused(argv, capsys, str(image), option)
    assert digest(image) == before
    assert not (tmp_path / "map.tif").exists()


def test_predict_refuses_the_scene_through_another_spelling(tmp_path, checkpoint, capsys):
    image = scene(tmp_path / "x.tif")
    (tmp_path / "link.tif").symlink_to(image)
    before = digest(image)
    refused(["predict", checkpoint, image, "--out", tmp_path / "sub" / ".." / "link.tif"], capsys, "input")
    assert digest(image) == before


def test_predict_library_refuses_too(tmp_path, checkpoint):
    from terralite.benchmark.mapping import map_raster

    image = scene(tmp_path / "x.tif")
    before = digest(image)
    with pytest.raises(TerraLiteError, match="also an input"):
        map_raster(checkpoint, image, image, tile=64, progress=False)
    with pytest.raises(TerraLiteError, match="also an input"):
        map_raster(checkpoint, image, tmp_path / "m.tif", preview=tmp_path / "m.tif", tile=64, progress=False)
    assert digest(image) == before


def test_export_never_replaces_its_checkpoint(tmp_path, checkpoint, capsys):
    ckpt = shutil.copy(checkpoint, tmp_path / "ck.pt")
    before = digest(Path(ckpt))
    refused(["export", ckpt, "--out", ckpt, "--size", 64], capsys, "ck.pt")
    assert digest(Path(ckpt)) == before
    from terralite.benchmark.export_verify import export_model

    with pytest.raises(TerraLiteError, match="also an input"):
        export_model(str(ckpt), ckpt, size=64)
    assert digest(Path(ckpt)) == before


def test_export_onto_a_folder_or_unwritable_path_is_one_line(tmp_path, checkpoint, capsys):
    refused(["export", checkpoint, "--out", tmp_path, "--size", 64], capsys, "is a folder")
    refused(["export", checkpoint, "--out", tmp_path / "missing" / "m.onnx", "--size", 64], capsys, "does not exist")


def test_quantize_never_replaces_its_source(tmp_path, checkpoint, capsys, synthetic_root):
    ckpt = Path(shutil.copy(checkpoint, tmp_path / "m.onnx"))
    before = digest(ckpt)
    refused(["quantize", ckpt, "--calib", synthetic_root, "--out", ckpt], capsys, "m.onnx")
    assert digest(ckpt) == before


def test_synth_refuses_a_folder_holding_another_dataset(tmp_path, synthetic_root, capsys):
    other = Path(shutil.copytree(synthetic_root, tmp_path / "oem"))
    (other / ".terralite-owner").unlink(missing_ok=True)  # a dataset the user brought (not written by data synth)
    lists = {p.name: digest(p) for p in other.glob("*.txt")}
    tile = next(other.rglob("*.tif"))
    tile_digest = digest(tile)
    refused(["data", "synth", other, "--tiles", 2, "--size", 32], capsys, str(other), "did not write")
    assert {p.name: digest(p) for p in other.glob("*.txt")} == lists
    assert digest(tile) == tile_digest


def test_synth_rewrites_its_own_dataset_and_fills_an_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["data", "synth", str(tmp_path / "empty"), "--tiles", "2", "--size", "32"]) == 0
    assert main(["data", "synth", str(tmp_path / "empty"), "--tiles", "2", "--size", "32", "--seed", "1"]) == 0
    assert (tmp_path / "empty" / "train.txt").is_file()


def test_demo_never_removes_a_folder_it_did_not_create(tmp_path, capsys):
    """With ``--out .`` beside the user's own ``data/``, the demo refuses instead of wiping the dataset."""
    user_data = tmp_path / "data"
    user_data.mkdir()
    mine = user_data / "train.txt"
    mine.write_text("my_tile.tif\n")
    for folder in ("map", "onnx", "bench"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "keep.txt").write_text(folder)
    refused(["demo", "--out", tmp_path, "--fast"], capsys, str(user_data), "not created by this demo")
    assert mine.read_text() == "my_tile.tif\n"
    for folder in ("map", "onnx", "bench"):
        assert (tmp_path / folder / "keep.txt").read_text() == folder
    # --only of a later step: the same rule
    refused(["demo", "--out", tmp_path, "--fast", "--only", "map"], capsys, "map")
    assert (tmp_path / "map" / "keep.txt").read_text() == "map"


def test_demo_removes_only_leftovers_it_created(tmp_path, monkeypatch):
    import terralite.demo as demo

    data_step = next(s for s in demo.STEPS if s.name == "data")

    runs = []

    def fail(ctx):
        runs.append(1)
        ctx.path("half").mkdir(exist_ok=True)
        (ctx.path("half") / f"partial{len(runs)}.bin").write_bytes(b"x")
        raise TerraLiteError("boom")

    monkeypatch.setattr(demo, "STEPS", [data_step, demo.Step("half", "fails", lambda c: [c.path("x")], fail, ["half"])])
    for _ in range(2):  # the second run removes the first's leftovers (the demo created the folder)
        with pytest.raises(TerraLiteError, match="boom"):
            demo.run_demo(tmp_path / "out", fast=True, log=lambda line: None)
    assert sorted(p.name for p in (tmp_path / "out" / "half").iterdir()) == ["partial2.bin"]


def test_output_equal_to_another_output_is_refused(tmp_path, checkpoint, capsys):
    image = scene(tmp_path / "x.tif")
    refused(["predict", checkpoint, image, "--out", tmp_path / "m.tif", "--preview", tmp_path / "m.tif"], capsys, "same path")
