import numpy as np
import pytest
import rasterio
from affine import Affine

from terralite.data.raster import open_raster, raster_info, read_label, read_raster, write_geotiff
from terralite.errors import TerraLiteError

TRANSFORM = Affine(1e-5, 0.0, 10.0, 0.0, -1e-5, 50.0)


@pytest.fixture
def rgb(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (3, 40, 56), dtype=np.uint8)
    return array, write_geotiff(tmp_path / "rgb.tif", array, crs="EPSG:4326", transform=TRANSFORM)


@pytest.mark.parametrize("interleave", ["pixel", "band"])
def test_round_trip_any_interleave(tmp_path, interleave):
    array = np.random.default_rng(1).integers(0, 256, (3, 33, 47), dtype=np.uint8)
    path = write_geotiff(tmp_path / "x.tif", array, crs="EPSG:4326", transform=TRANSFORM, interleave=interleave)
    info = raster_info(path)
    assert info.interleave == interleave and (info.count, info.height, info.width) == (3, 33, 47)
    assert info.crs.to_epsg() == 4326 and info.transform == TRANSFORM
    np.testing.assert_array_equal(read_raster(path), array)
    np.testing.assert_array_equal(read_raster(path, bands=[2, 0]), array[[2, 0]])


def test_writes_are_byte_identical_and_leave_no_sidecars(tmp_path, rgb):
    array, first = rgb
    second = write_geotiff(tmp_path / "again.tif", array, crs="EPSG:4326", transform=TRANSFORM)
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.tif", "rgb.tif"]


def test_missing_folder_and_non_raster_name_the_file(tmp_path):
    with pytest.raises(TerraLiteError, match="nothere.tif does not exist"):
        read_raster(tmp_path / "nothere.tif")
    with pytest.raises(TerraLiteError, match="is a folder"):
        read_raster(tmp_path)
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    with pytest.raises(TerraLiteError, match=r"cannot open raster .*notes\.tif"):
        read_raster(text)


def test_truncated_raster_fails_on_read_naming_the_file(tmp_path, rgb):
    _, path = rgb
    data = path.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(TerraLiteError, match=r"cut\.tif"):
        read_raster(cut)


def test_read_label_requires_one_band(rgb):
    _, path = rgb
    with pytest.raises(TerraLiteError, match=r"rgb\.tif has 3 bands; a label must be single-band"):
        read_label(path)


def test_bad_band_index(rgb):
    _, path = rgb
    with pytest.raises(TerraLiteError, match=r"has 3 bands .*\[5\]"):
        read_raster(path, bands=[5])


@pytest.mark.parametrize("relative, interleave", [
    ("openearthmap/houston/images/houston_16.tif", "pixel"),
    ("openearthmap_unlabelled/adelaide_2.tif", "band"),
])
def test_real_oem_tiles_match_rasterio(fixtures_dir, relative, interleave):
    path = fixtures_dir / relative
    with rasterio.open(path) as src:
        direct = src.read()
    ours = read_raster(path)
    assert raster_info(path).interleave == interleave
    assert ours.shape == (3, 1024, 1024) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, direct)
    # one pixel read band by band must be that pixel in every layout
    with open_raster(path) as src:
        assert [int(src.read(b + 1)[500, 700]) for b in range(3)] == ours[:, 500, 700].tolist()


def test_real_oem_label_histogram(fixtures_dir):
    path = fixtures_dir / "openearthmap/houston/labels/houston_16.tif"
    label = read_label(path)
    with rasterio.open(path) as src:
        direct = src.read(1)
    assert label.shape == (1024, 1024)
    counts = np.bincount(label.ravel(), minlength=9)
    np.testing.assert_array_equal(counts, np.bincount(direct.ravel(), minlength=9))
    assert set(np.flatnonzero(counts).tolist()) == {0, 2, 3, 4, 5, 6, 8}
    assert counts[0] == 183
