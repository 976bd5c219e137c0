"""A predicted map describes itself: tags, band description, colour table and category names (read back with
rasterio, as gdalinfo shows them), and a preview with the input, a scale bar and a legend."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from terralite import __version__
from terralite.checkpoint import save_checkpoint
from terralite.cli import main
from terralite.data.classes import CLASS_NAMES, PALETTE
from terralite.models import build_model, spec_hash

sys.path.insert(0, str(Path(__file__).parent))
from test_predict import NORM3, random_image, write_raster  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "engine"))
from tiny_model import NAME as TINY, register  # noqa: E402


def test_map_records_model_tta_tiling_version_and_class_names(tmp_path, capsys):
    register()
    spec = {"kind": "baseline", "name": TINY, "in_channels": 3, "num_classes": 8, "label": "tiny-net"}
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", spec, build_model(spec).state_dict(), input=NORM3)
    src = write_raster(tmp_path / "in.tif", random_image(96, 128))
    assert main(["predict", str(tmp_path / "m.pt"), str(src), "--out", str(tmp_path / "map.tif"), "--tile", "64",
                 "--overlap", "16", "--tta", "hflip", "--preview", str(tmp_path / "map.png"), "--quiet"]) == 0, capsys.readouterr().err
    with rasterio.open(tmp_path / "map.tif") as out:
        tags = out.tags()
        assert tags["MODEL"] == "tiny-net" and tags["SPEC_HASH"] == spec_hash(spec)
        assert (tags["TTA"], tags["TILE"], tags["OVERLAP"], tags["TERRALITE_VERSION"]) == ("hflip", "64", "16", __version__)
        assert tags["CLASSES"].split(";")[:3] == ["0=no data", f"1={CLASS_NAMES[0]}", f"2={CLASS_NAMES[1]}"]
        assert out.descriptions[0].startswith("land-cover class id (1..8, 0 = no data)")
        band = out.tags(1)
        assert [band[f"CLASS_{i}"] for i in range(1, 9)] == list(CLASS_NAMES) and band["CLASS_0"] == "no data"
        assert out.colormap(1)[4][:3] == PALETTE[4]
    # the category names and attribute table GDAL (QGIS, ArcGIS) reads from the PAM side file
    pam = ET.parse(tmp_path / "map.tif.aux.xml").getroot()
    assert [c.text for c in pam.find("PAMRasterBand/CategoryNames")] == ["no data", *CLASS_NAMES]
    rows = pam.findall("PAMRasterBand/GDALRasterAttributeTable/Row")
    assert [(int(r[0].text), r[1].text, tuple(int(f.text) for f in r[2:])) for r in rows][5] == (5, CLASS_NAMES[4], PALETTE[5])
    with rasterio.Env(GDAL_PAM_ENABLED="YES"), rasterio.open(tmp_path / "map.tif") as out:
        assert out.tags()["MODEL"] == "tiny-net"  # the side file does not hide the file's own metadata


def test_preview_shows_input_beside_map_with_scale_bar(tmp_path):
    import matplotlib.image as mpimg

    from terralite.predict import _metres_per_pixel, render_preview

    image = random_image(128, 128)
    src = write_raster(tmp_path / "in.tif", image)  # 0.5 m pixels, UTM
    classes = np.kron(np.arange(1, 5, dtype=np.uint8).reshape(2, 2), np.ones((64, 64), np.uint8))[None]
    mapped = write_raster(tmp_path / "map.tif", classes)
    with rasterio.open(mapped) as ds:
        assert _metres_per_pixel(ds) == 0.5
    from rasterio.transform import from_origin

    with rasterio.open(tmp_path / "geo.tif", "w", driver="GTiff", width=128, height=128, count=1, dtype="uint8",
                       crs="EPSG:4326", transform=from_origin(10.0, 45.0, 1e-5, 1e-5)) as ds:
        ds.write(classes)
    with rasterio.open(tmp_path / "geo.tif") as ds:  # degrees → metres at the raster's latitude (~45°)
        assert _metres_per_pixel(ds) == pytest.approx(1e-5 * 111_320 * np.cos(np.radians(45.0)), rel=1e-3)
    alone = mpimg.imread(render_preview(mapped, tmp_path / "alone.png", CLASS_NAMES))
    both = mpimg.imread(render_preview(mapped, tmp_path / "both.png", CLASS_NAMES, input_path=src))
    assert both.shape[1] > alone.shape[1] * 1.4  # a second panel
