"""`terralite train --set data.kind=large-raster`: training on windows of one image/label raster pair."""

import csv

import numpy as np
from affine import Affine

from terralite.checkpoint import load_checkpoint
from terralite.cli import main
from terralite.data.raster import write_geotiff

GRID = dict(crs="EPSG:32646", transform=Affine(2.0, 0, 230000, 0, -2.0, 2630000))


def test_train_runs_on_a_raster_pair(tmp_path):
    rng = np.random.default_rng(0)
    label = rng.integers(1, 12, (192, 256), dtype=np.uint8)  # BOLM raw ids 1..11
    image = (label[None] * 20 + rng.integers(0, 20, (3, 192, 256))).astype(np.uint8)
    mask = np.zeros((192, 256), dtype=np.uint8)
    mask[128:, 192:] = 1  # the held-out corner
    for name, array in (("image", image), ("label", label), ("mask", mask)):
        write_geotiff(tmp_path / f"{name}.tif", array, **GRID)
    out = tmp_path / "run"
    code = main(["train", "--model", "unet-mobilenetv2", "--out", str(out), "--epochs", "1", "--batch-size", "2",
                 "--crop", "0", "--device", "cpu", "--set", "data.kind=large-raster",
                 "--set", f"data.image={tmp_path / 'image.tif'}", "--set", f"data.label={tmp_path / 'label.tif'}",
                 "--set", f"data.region_mask={tmp_path / 'mask.tif'}", "--set", "data.window=64", "--set", "steps_per_epoch=2"])
    assert code == 0
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["config"]["data"]["kind"] == "large-raster" and ckpt["spec"]["num_classes"] == 5  # BOLM 11 -> 5 scored classes (+ ignored)
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert len(rows) == 1 and 0.0 <= float(rows[0]["val_miou"]) <= 1.0
    assert "kind: large-raster" in (out / "config.yaml").read_text()
