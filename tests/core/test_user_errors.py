"""Every bad input ends in one clear line (issue 14, items 6 and 7): each case runs through the real CLI and must
exit non-zero with exactly one stderr line that names the offending file or value, and no traceback."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from terralite.checkpoint import save_checkpoint
from terralite.cli import main
from terralite.models import build_model

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from tiny_model import NAME as TINY, register  # noqa: E402

NORM = {"bands": None, "mean": [120.0, 110.0, 100.0], "std": [50.0, 45.0, 40.0]}
TRAIN = ["--epochs", "1", "--batch-size", "2", "--crop", "32", "--device", "cpu"]


class _NotATensor:
    pass


@pytest.fixture(scope="module")
def files(tmp_path_factory, synthetic_root) -> dict[str, Path]:
    """Broken or unusual inputs, each in its own file."""
    from PIL import Image

    register()
    d = tmp_path_factory.mktemp("bad")
    spec = {"kind": "baseline", "name": TINY, "in_channels": 3, "num_classes": 8}
    torch.manual_seed(0)
    f = {"ckpt": save_checkpoint(d / "m.pt", spec, build_model(spec).state_dict(), input=NORM)}
    (d / "empty.pt").write_bytes(b"")
    f["empty"] = d / "empty.pt"
    (d / "junk.pt").write_bytes(b"\x00\x01 not a checkpoint")
    f["junk"] = d / "junk.pt"
    other = build_model({"kind": "baseline", "name": "unet-mobilenetv2", "in_channels": 3, "num_classes": 8}).state_dict()
    f["other_model"] = save_checkpoint(d / "other_model.pt", spec, other, input=NORM)
    torch.save({"object": _NotATensor()}, d / "pickle.pt")
    f["pickle"] = d / "pickle.pt"
    huge = {"kind": "fasterseg", "arch": {"F": 2, "width_base": 10**9, "stem_width": 12, "head_width": 12, "branches": []},
            "in_channels": 3, "num_classes": 8}
    (d / "huge.json").write_text(json.dumps(huge))
    f["huge"] = d / "huge.json"
    (d / "classes.json").write_text(json.dumps({**huge, "arch": {**huge["arch"], "width_base": 12}, "num_classes": 10**7}))
    f["classes"] = d / "classes.json"
    (d / "deep.json").write_text("[" * 100000 + "]" * 100000)
    f["deep"] = d / "deep.json"
    (d / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    f["binary"] = d / "binary.json"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(d / "png.png")
    shutil.copy(d / "png.png", d / "renamed.tif")
    f["png_tif"] = d / "renamed.tif"
    f["scene"] = next(Path(synthetic_root).glob("*/images/*.tif"))
    (d / "folder").mkdir()
    f["folder"] = d / "folder"
    dup = Path(shutil.copytree(synthetic_root, d / "dup"))
    names = (dup / "train.txt").read_text().split()
    (dup / "train.txt").write_text("\n".join([*names, names[0]]))
    f["dup"] = dup
    f["data"] = synthetic_root
    (d / "bad.yaml").write_bytes(b"epochs: [1,\n\xff\xfe")
    f["bad_yaml"] = d / "bad.yaml"
    return f


# case → (argv with {name} placeholders for the files above, text the one line must contain)
CASES = {
    "empty checkpoint": (["eval", "{empty}", "--data", "{data}"], "empty (0 bytes)"),
    "empty checkpoint export": (["export", "{empty}", "--out", "{tmp}/m.onnx", "--size", "64"], "empty.pt"),
    "empty checkpoint predict": (["predict", "{empty}", "{scene}", "--out", "{tmp}/m.tif"], "empty.pt"),
    "junk checkpoint": (["eval", "{junk}", "--data", "{data}"], "junk.pt"),
    "state dict of another model": (["eval", "{other_model}", "--data", "{data}"], "do not belong"),
    "pickle checkpoint": (["eval", "{pickle}", "--data", "{data}"], "could run arbitrary code"),
    "negative lr": (["train", "--model", TINY, "--data", "{data}", "--out", "{tmp}/r", *TRAIN, "--set", "optim.lr=-1"], "optim.lr"),
    "nan lr": (["train", "--model", TINY, "--data", "{data}", "--out", "{tmp}/r", *TRAIN, "--set", "optim.lr=.nan"], "optim.lr"),
    "negative weight decay": (["train", "--model", TINY, "--data", "{data}", "--out", "{tmp}/r", *TRAIN, "--set",
                               "optim.weight_decay=-0.1"], "optim.weight_decay"),
    "nan weight decay": (["train", "--model", TINY, "--data", "{data}", "--out", "{tmp}/r", *TRAIN, "--set",
                          "optim.weight_decay=.inf"], "optim.weight_decay"),
    "negative workers": (["train", "--model", TINY, "--data", "{data}", "--out", "{tmp}/r", *TRAIN, "--workers", "-1"], "workers"),
    "negative search lr": (["search", "sparsemask", "--data", "{data}", "--out", "{tmp}/s", "--preset", "tiny", "--set", "lr=-0.1"], "lr"),
    "config is a folder": (["train", "--config", "{folder}", "--out", "{tmp}/r"], "folder"),
    "malformed yaml in --set": (["train", "--model", TINY, "--data", "{data}", "--out", "{tmp}/r", "--set", "optim.lr=[1,"], "optim.lr"),
    "non-utf8 in --set": (["train", "--model", TINY, "--data", "{data}", "--out", "{tmp}/r", "--set", "optim.lr=\udcff\udcfe"], "optim.lr"),
    "non-utf8 config": (["train", "--config", "{bad_yaml}", "--out", "{tmp}/r"], "bad.yaml"),
    "export onto a folder": (["export", "{ckpt}", "--out", "{folder}", "--size", "64"], "is a folder"),
    "export to a missing folder": (["export", "{ckpt}", "--out", "{tmp}/no/such/m.onnx", "--size", "64"], "does not exist"),
    "huge widths": (["profile", "{huge}", "--size", "64"], "width_base"),
    "huge classes": (["profile", "{classes}", "--size", "64"], "num_classes"),
    "deeply nested json": (["profile", "{deep}", "--size", "64"], "deep.json"),
    "binary json": (["profile", "{binary}", "--size", "64"], "binary.json"),
    "duplicate names in a split list": (["train", "--model", TINY, "--data", "{dup}", "--out", "{tmp}/r", *TRAIN], "twice"),
    "png renamed tif": (["predict", "{ckpt}", "{png_tif}", "--out", "{tmp}/m.tif"], "not a GeoTIFF"),
    "map not named .tif": (["predict", "{ckpt}", "{scene}", "--out", "{tmp}/m.png"], "must name a GeoTIFF"),
    "export not named .onnx": (["export", "{ckpt}", "--out", "{tmp}/m.txt", "--size", "64"], "must name an .onnx file"),
    "opset the exporter cannot write": (["export", "{ckpt}", "--out", "{tmp}/m.onnx", "--size", "64", "--opset", "3"],
                                        "--opset 3 cannot be written"),
    "bench size 0": (["bench", TINY, "--size", "0", "--out", "{tmp}/b.jsonl"], "input size 0 must be a positive multiple of 32"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_ends_in_one_clear_line(case, files, tmp_path, capsys):
    argv, expected = CASES[case]
    values = {**{k: str(v) for k, v in files.items()}, "tmp": str(tmp_path)}
    status = main([a.format(**values) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status != 0, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("terralite: error: "), err
    assert expected in lines[0], lines[0]
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()  # a refused command leaves no folder
    assert not [p.name for p in tmp_path.iterdir() if p.suffix in (".png", ".txt", ".onnx", ".jsonl")]  # nor a file


def test_band_hint_lists_as_many_indices_as_the_model_takes(files, tmp_path, capsys):
    import rasterio
    from rasterio.transform import from_origin

    scene = tmp_path / "four.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=32, height=32, count=4, dtype="uint8", crs="EPSG:32618",
                       transform=from_origin(0, 0, 1, 1)) as dst:
        dst.write(np.zeros((4, 32, 32), np.uint8))
    assert main(["predict", str(files["ckpt"]), str(scene), "--out", str(tmp_path / "m.tif")]) != 0
    line = capsys.readouterr().err.strip()
    assert "has 4 bands but model" in line and "--bands 0,1,2)" in line
