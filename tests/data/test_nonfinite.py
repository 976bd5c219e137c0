"""Bad numbers never train or map silently (issue 14, item 2): NaN/Inf pixels are reported by ``data check``,
refused by training (non-finite statistics) and mapped as nodata (0) by ``predict``."""

from __future__ import annotations

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
from terralite.models import build_model

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from tiny_model import NAME as TINY, register  # noqa: E402


@pytest.fixture
def tiny_model_name():
    """The engine tests' tiny baseline, registered for this test only (tests iterating every baseline never see it)."""
    from terralite.benchmark.zoo import BASELINES

    register()
    yield TINY
    BASELINES._entries.pop(TINY, None)


def _float_copy(root: Path, tmp_path: Path, poison: bool) -> tuple[Path, Path]:
    """A copy of the synthetic dataset whose first training image is float32 (with NaN/Inf pixels when ``poison``)."""
    data = Path(shutil.copytree(root, tmp_path / "oem"))
    name = (data / "train.txt").read_text().split()[0]
    image = next(data.glob(f"*/images/{name}"))
    with rasterio.open(image) as src:
        profile, pixels = src.profile, src.read().astype(np.float32)
    if poison:
        pixels[0, :4, :4] = np.nan
        pixels[1, 10, 10] = np.inf
    profile.update(dtype="float32")
    with rasterio.open(image, "w", **profile) as dst:
        dst.write(pixels)
    return data, image


def test_data_check_reports_nonfinite_pixels_and_mixed_types(synthetic_root, tmp_path, capsys):
    data, image = _float_copy(synthetic_root, tmp_path, poison=True)
    assert main(["data", "check", str(data)]) == 1
    out = capsys.readouterr().out
    assert f"{image}" in out and "17 pixel value(s) are NaN or infinite" in out
    assert "image pixels are float32 but the other images are uint8" in out


def test_training_refuses_nonfinite_statistics(synthetic_root, tmp_path, capsys, tiny_model_name):
    data, _ = _float_copy(synthetic_root, tmp_path, poison=True)
    run = tmp_path / "run"
    status = main(["train", "--model", tiny_model_name, "--data", str(data), "--out", str(run), "--epochs", "1",
                   "--batch-size", "2", "--crop", "32", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert "problem" in err[-1] and "data check" in err[-1] and str(data) in err[-1]
    assert not run.exists()


def test_nonfinite_statistics_are_refused_naming_the_data():
    from terralite.data.normalize import require_finite_normalisation
    from terralite.errors import TerraLiteError

    require_finite_normalisation({"mean": [1.0, 2.0], "std": [1.0, 1.0]}, "ok")
    with pytest.raises(TerraLiteError, match=r"pixel statistics of scene.tif are not finite .*nan"):
        require_finite_normalisation({"mean": [float("nan"), 2.0], "std": [1.0, float("inf")]}, "scene.tif")


def test_predict_maps_nonfinite_pixels_as_nodata(tmp_path, tiny_model_name):
    spec = {"kind": "baseline", "name": TINY, "in_channels": 3, "num_classes": 8}
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "m.pt", spec, build_model(spec).state_dict(),
                           input={"bands": None, "mean": [120.0] * 3, "std": [50.0] * 3})
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 64, 64)).astype(np.float32)
    pixels[:, 0:16, 0:16] = np.nan
    pixels[2, 40, 40] = -np.inf
    scene = tmp_path / "x.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=64, height=64, count=3, dtype="float32", crs="EPSG:32618",
                       transform=from_origin(500000.0, 4200000.0, 0.5, 0.5)) as dst:
        dst.write(pixels)
    assert main(["predict", str(ckpt), str(scene), "--out", str(tmp_path / "map.tif"), "--tile", "64", "--quiet"]) == 0
    with rasterio.open(tmp_path / "map.tif") as src:
        classes = src.read(1)
    assert (classes[0:16, 0:16] == 0).all() and classes[40, 40] == 0
    finite = np.isfinite(pixels).all(axis=0)
    assert (classes[finite] >= 1).all()  # every finite pixel got a class (NaN did not spread through the network)
