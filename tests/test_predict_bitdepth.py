"""A 16-bit scene for a model trained on 8-bit tiles is never mapped silently as if it were 8-bit (issue 14,
item 2): it is refused with one line naming the scene and the statistics; with the normalisation given in the
scene's units (``--mean/--std`` x 257) its map equals the 8-bit scene's map."""

from __future__ import annotations

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

sys.path.insert(0, str(Path(__file__).parent / "engine"))
from tiny_model import NAME as TINY, register  # noqa: E402

MEAN, STD = [120.0, 110.0, 100.0], [50.0, 45.0, 40.0]


@pytest.fixture
def tiny_model_name():
    from terralite.benchmark.zoo import BASELINES

    register()
    yield TINY
    BASELINES._entries.pop(TINY, None)


def _write(path: Path, pixels: np.ndarray) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=pixels.shape[2], height=pixels.shape[1], count=3,
                       dtype=pixels.dtype.name, crs="EPSG:32618", transform=from_origin(500000.0, 4200000.0, 0.5, 0.5)) as dst:
        dst.write(pixels)
    return path


def test_16_bit_scene_is_refused_then_maps_like_its_8_bit_version(tmp_path, tiny_model_name, capsys):
    spec = {"kind": "baseline", "name": tiny_model_name, "in_channels": 3, "num_classes": 8}
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "m.pt", spec, build_model(spec).state_dict(), input={"bands": None, "mean": MEAN, "std": STD})
    rng = np.random.default_rng(0)
    base = np.kron(rng.integers(0, 255, (3, 9, 9)), np.ones((1, 8, 8)))[:, :64, :64]
    eight = _write(tmp_path / "x8.tif", base.astype(np.uint8))
    sixteen = _write(tmp_path / "x16.tif", (base * 257).astype(np.uint16))
    common = ["--tile", "64", "--quiet"]
    assert main(["predict", str(ckpt), str(eight), "--out", str(tmp_path / "m8.tif"), *common]) == 0
    capsys.readouterr()
    assert main(["predict", str(ckpt), str(sixteen), "--out", str(tmp_path / "m16.tif"), *common]) == 2
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1 and "x16.tif (uint16)" in line and "--mean and --std" in line
    assert not (tmp_path / "m16.tif").exists()
    scaled = ["--mean", ",".join(str(m * 257) for m in MEAN), "--std", ",".join(str(s * 257) for s in STD)]
    assert main(["predict", str(ckpt), str(sixteen), "--out", str(tmp_path / "m16.tif"), *common, *scaled]) == 0
    with rasterio.open(tmp_path / "m8.tif") as a, rasterio.open(tmp_path / "m16.tif") as b:
        agreement = float((a.read(1) == b.read(1)).mean())
    assert agreement > 0.99
