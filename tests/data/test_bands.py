import numpy as np
import pytest
import rasterio

from terralite.data.bands import (SENTINEL2_L1C_BANDS, band_names, derive, find_band_files, ndvi, ndwi_gao,
                                  ndwi_mcfeeters, read_band_stack, resolve_bands, rvi, stack_inputs)
from terralite.errors import TerraLiteError


def test_resolve_bands():
    names = ("red", "green", "blue")
    assert resolve_bands(["Blue", 0, "1"], names) == [2, 0, 1]
    with pytest.raises(TerraLiteError, match="band index 3 out of range"):
        resolve_bands([3], names)
    with pytest.raises(TerraLiteError, match="empty"):
        resolve_bands([], names)


def test_indices_values_and_safe_division():
    b3 = b4 = b11 = np.array([0.0, 100.0, 300.0, 0.0], dtype=np.float32)
    b8 = np.array([0.0, 300.0, 100.0, 50.0], dtype=np.float32)
    assert ndvi(b8, b4).tolist() == pytest.approx([0.0, 0.5, -0.5, 1.0], abs=1e-6)
    assert ndwi_gao(b8, b11).tolist() == pytest.approx([0.0, 0.5, -0.5, 1.0], abs=1e-6)
    assert ndwi_mcfeeters(b3, b8).tolist() == pytest.approx([0.0, -0.5, 0.5, -1.0], abs=1e-6)
    ratio = rvi(b8, b4)
    assert ratio[:3].tolist() == pytest.approx([0.0, 3.0, 1 / 3]) and np.isfinite(ratio).all()


def test_composites_and_index_replication():
    bands = {f"B{n}": np.full((2, 2), float(i), dtype=np.float32)
             for i, n in enumerate(["02", "03", "04", "08", "11", "12"], start=1)}
    assert derive(bands, "rgb")[:, 0, 0].tolist() == [3, 2, 1]       # B4, B3, B2
    assert derive(bands, "atm")[:, 0, 0].tolist() == [6, 5, 4]       # B12, B11, B8
    assert derive(bands, "fci")[:, 0, 0].tolist() == [4, 3, 2]       # B8, B4, B3
    assert derive(bands, "swi")[:, 0, 0].tolist() == [6, 4, 3]       # B12, B8, B4
    index = derive(bands, "ndvi")
    assert index.shape == (3, 2, 2) and np.all(index == index[0])
    assert stack_inputs(bands, ["rgb", "ndwi", "B08"]).shape == (7, 2, 2)
    with pytest.raises(TerraLiteError, match="unknown derived input"):
        derive(bands, "evi")
    with pytest.raises(TerraLiteError, match="needs Sentinel-2 band"):
        derive({"B04": bands["B04"]}, "ndvi")


def test_bigearthnet_bands_resampled_to_10m(fixtures_dir):
    folders = list((fixtures_dir / "sentinel2/BigEarthNet/BigEarthNet-S2").glob("*/*"))
    files = find_band_files(folders[0])
    assert set(files) == {"B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"}
    bands, grid = read_band_stack(files)
    assert (grid["height"], grid["width"]) == (120, 120) and grid["transform"].a == 10
    for name, array in bands.items():
        assert array.shape == (120, 120) and array.dtype == np.float32 and np.isfinite(array).all(), name
    with rasterio.open(files["B04"]) as src:  # 10 m bands are untouched
        np.testing.assert_array_equal(bands["B04"], src.read(1).astype(np.float32))
    with rasterio.open(files["B11"]) as src:  # 20 m: bilinear upsampling keeps the range and the mean
        native = src.read(1).astype(np.float32)
    assert native.shape == (60, 60)
    assert native.min() - 1 <= bands["B11"].min() and bands["B11"].max() <= native.max() + 1
    assert abs(bands["B11"].mean() - native.mean()) < 0.02 * native.mean()
    for name in ("ndvi", "ndwi", "ndwi_mcfeeters"):
        x = derive(bands, name)
        assert x.shape == (3, 120, 120) and np.isfinite(x).all() and x.min() >= -1 and x.max() <= 1
    ratio = derive(bands, "rvi")
    assert ratio.shape == (3, 120, 120) and np.isfinite(ratio).all() and ratio.min() >= 0
    assert derive(bands, "ndvi").mean() > 0.3  # a vegetated patch


def test_eurosat_13_band_patches(fixtures_dir):
    from terralite.data.raster import open_raster, read_from

    paths = sorted((fixtures_dir / "sentinel2/EuroSAT_MS").glob("*/*.tif"))
    assert len(paths) == 3
    ndvis = {}
    for path in paths:
        with open_raster(path) as src:
            names = band_names(src)
            patch = read_from(src)
        assert names == SENTINEL2_L1C_BANDS and patch.shape == (13, 64, 64) and patch.dtype == np.uint16
        bands = dict(zip(names, patch))
        ndvis[path.parent.name] = float(derive(bands, "ndvi").mean())
    assert ndvis["SeaLake"] < 0 < ndvis["Pasture"]
