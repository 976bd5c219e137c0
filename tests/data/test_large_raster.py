import numpy as np
import pytest
import torch
from affine import Affine

from terralite.data.classes import IGNORE_INDEX
from terralite.data.large_raster import BOLM_MERGE, LargeRasterDataset, merge_lut, window_offsets
from terralite.data.raster import write_geotiff
from terralite.errors import TerraLiteError

GRID = dict(crs="EPSG:32646", transform=Affine(2.22, 0, 230000, 0, -2.22, 2630000))


@pytest.fixture
def big(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (3, 150, 200), dtype=np.uint8)
    label = rng.integers(0, 13, (150, 200), dtype=np.uint8)
    mask = np.zeros((150, 200), dtype=np.uint8)
    mask[40:110, 60:160] = 1  # the "city centre"
    write_geotiff(tmp_path / "image.tif", image, **GRID)
    write_geotiff(tmp_path / "label.tif", label, **GRID)
    write_geotiff(tmp_path / "mask.tif", mask, **GRID)
    return tmp_path, image, label, mask


def test_window_offsets_cover_the_raster():
    assert window_offsets(200, 64, 16)[-1] == 136 and window_offsets(200, 64, 16)[:3] == [0, 16, 32]
    assert window_offsets(200, 50, 50) == [0, 50, 100, 150]
    assert window_offsets(30, 64, 16) == [0]


def test_windows_equal_direct_slices_with_merge(big):
    root, image, label, _ = big
    ds = LargeRasterDataset(root / "image.tif", root / "label.tif", window=64, mean=0, std=1)
    assert ds.stride == 16 and len(ds) == len(window_offsets(150, 64, 16)) * len(window_offsets(200, 64, 16))
    lut = merge_lut(BOLM_MERGE)
    for index in (0, len(ds) // 2, len(ds) - 1):
        x, y = ds[index]
        w = ds.windows[index]
        rows, cols = slice(w.row_off, w.row_off + 64), slice(w.col_off, w.col_off + 64)
        assert x.shape == (3, 64, 64) and y.dtype == torch.int64
        np.testing.assert_array_equal(x.numpy(), image[:, rows, cols].astype(np.float32))
        np.testing.assert_array_equal(y.numpy(), lut[label[rows, cols]])


def test_bolm_merge_table():
    lut = merge_lut(BOLM_MERGE)
    assert lut[[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]].tolist() == [0, 1, 2, 3, 3, 3, 3, 3, 4, 4]
    assert lut[[0, 11, 12, 200]].tolist() == [IGNORE_INDEX] * 4
    assert merge_lut({1: 0, 2: None})[[1, 2, 3]].tolist() == [0, IGNORE_INDEX, IGNORE_INDEX]


def test_region_mask_splits_space(big):
    root, _, _, mask = big
    kwargs = dict(window=50, stride=50, mean=0, std=1)
    inside = LargeRasterDataset(root / "image.tif", root / "label.tif", region_mask=root / "mask.tif", **kwargs)
    outside = LargeRasterDataset(root / "image.tif", root / "label.tif", region_mask=root / "mask.tif",
                                 keep="outside", **kwargs)
    assert len(inside) + len(outside) == 12
    centres = [(w.row_off + 25, w.col_off + 25) for w in inside.windows]
    assert centres and all(mask[r, c] for r, c in centres)
    assert not any(mask[w.row_off + 25, w.col_off + 25] for w in outside.windows)
    majority = LargeRasterDataset(root / "image.tif", region_mask=mask.astype(bool), mask_rule="majority", **kwargs)
    for w in majority.windows:
        assert mask[w.row_off:w.row_off + 50, w.col_off:w.col_off + 50].mean() > 0.5


def test_small_raster_gives_one_padded_window_and_no_label(big):
    root, image, _, _ = big
    ds = LargeRasterDataset(root / "image.tif", window=256, stride=256)
    x, y = ds[0]
    assert len(ds) == 1 and x.shape == (3, 256, 256) and (y == IGNORE_INDEX).all()
    assert ds.mean == pytest.approx(image.reshape(3, -1).mean(axis=1), rel=1e-6)


def test_raw_labels_and_errors(big, tmp_path):
    root, _, label, _ = big
    ds = LargeRasterDataset(root / "image.tif", root / "label.tif", window=64, class_merge=None, mean=0, std=1)
    np.testing.assert_array_equal(ds[0][1].numpy(), label[:64, :64])
    write_geotiff(tmp_path / "small_label.tif", label[:100], **GRID)
    with pytest.raises(TerraLiteError, match=r"small_label\.tif is 200x100 px but image"):
        LargeRasterDataset(root / "image.tif", tmp_path / "small_label.tif")
    with pytest.raises(TerraLiteError, match="no windows"):
        LargeRasterDataset(root / "image.tif", region_mask=np.zeros((3, 3)), window=50, stride=50)


def test_dataloader_workers_reopen_files(big):
    root, _, _, _ = big
    ds = LargeRasterDataset(root / "image.tif", root / "label.tif", window=64, stride=64, mean=0, std=1)
    ds[0]  # open handles in this process; they must not be pickled
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1)
    batch = next(iter(loader))
    assert batch[0].shape == (2, 3, 64, 64)
