import shutil

import numpy as np
import pytest
import rasterio
import torch

from terralite.data.classes import IGNORE_INDEX
from terralite.data.openearthmap import OpenEarthMapDataset, list_samples, read_split_list, region_of
from terralite.data.transforms import RandomCrop
from terralite.errors import TerraLiteError


def test_split_list_without_trailing_newline(tmp_path):
    (tmp_path / "val.txt").write_text("aachen_1.tif\n\n  kyoto_12.tif  \nsan_juan_3")
    assert read_split_list(tmp_path, "val") == ["aachen_1.tif", "kyoto_12.tif", "san_juan_3.tif"]
    with pytest.raises(TerraLiteError, match=r"train\.txt does not exist \(split lists found: val\)"):
        read_split_list(tmp_path, "train")


def test_region_names():
    assert region_of("aachen_1.tif") == "aachen"
    assert region_of("san_juan_12.tif") == "san_juan"
    with pytest.raises(TerraLiteError, match="does not look like"):
        region_of("aachen.tif")


def test_official_split_lists(fixtures_dir):
    splits = fixtures_dir / "openearthmap_splits"
    names = {split: read_split_list(splits, split) for split in ("train", "val", "test")}
    assert {k: len(v) for k, v in names.items()} == {"train": 3000, "val": 500, "test": 1500}
    assert not (splits / "test.txt").read_text().endswith("\n")
    assert len({region_of(n) for v in names.values() for n in v}) == 97


def test_items_match_the_files(synthetic_root):
    ds = OpenEarthMapDataset(synthetic_root, "train", mean=0.0, std=1.0)
    assert len(ds) == 4 and ds.num_bands == 3 and ds.band_names == ("red", "green", "blue")
    image, label = ds[0]
    image_path, label_path = ds.samples[0]
    with rasterio.open(image_path) as src:
        raw = src.read()
    with rasterio.open(label_path) as src:
        raw_label = src.read(1)
    assert image.dtype == torch.float32 and image.shape == (3, 64, 64)
    assert label.dtype == torch.int64 and label.shape == (64, 64)
    np.testing.assert_array_equal(image.numpy(), raw.astype(np.float32))
    expected = np.where(raw_label == 0, IGNORE_INDEX, raw_label.astype(np.int64) - 1)
    np.testing.assert_array_equal(label.numpy(), expected)


def test_normalisation_computed_from_split_or_given(synthetic_root):
    from terralite.data.stats import compute_stats

    ds = OpenEarthMapDataset(synthetic_root, "train")
    stats = compute_stats(synthetic_root, "train")
    assert ds.mean == pytest.approx(stats["bands"]["mean"]) and ds.std == pytest.approx(stats["bands"]["std"])
    given = OpenEarthMapDataset(synthetic_root, "train", mean=[10, 20, 30], std=2.0)
    raw, _ = given.read(1)
    image, _ = given[1]
    np.testing.assert_allclose(image[2].numpy(), (raw[2] - 30.0) / 2.0, rtol=1e-6)
    assert given.input_record() == {"bands": None, "mean": [10.0, 20.0, 30.0], "std": [2.0, 2.0, 2.0]}
    with pytest.raises(TerraLiteError, match="mean has 2 values but the input has 3 band"):
        OpenEarthMapDataset(synthetic_root, "train", mean=[1, 2], std=1)


def test_band_selection_by_name_and_index(synthetic_root):
    ds = OpenEarthMapDataset(synthetic_root, "val", bands=["blue", 0], mean=0, std=1)
    full = OpenEarthMapDataset(synthetic_root, "val", mean=0, std=1)
    assert ds.bands == [2, 0] and ds.num_bands == 2
    torch.testing.assert_close(ds[0][0], full[0][0][[2, 0]])
    with pytest.raises(TerraLiteError, match="unknown band 'nir'"):
        OpenEarthMapDataset(synthetic_root, "val", bands=["nir"], mean=0, std=1)


@pytest.fixture
def odd_sized(tmp_path, make_tile):
    rng = np.random.default_rng(0)
    make_tile(tmp_path, "odd_1.tif", rng.integers(0, 256, (3, 50, 70), dtype=np.uint8),
              rng.integers(0, 9, (50, 70), dtype=np.uint8), interleave="band")
    (tmp_path / "train.txt").write_text("odd_1.tif")
    return tmp_path


def test_pad_policy_pads_with_ignore(odd_sized):
    ds = OpenEarthMapDataset(odd_sized, "train", mean=0, std=1)
    image, label = ds[0]
    assert image.shape == (3, 64, 96) and label.shape == (64, 96)
    assert (label[50:] == IGNORE_INDEX).all() and (label[:, 70:] == IGNORE_INDEX).all()
    assert (image[:, 50:] == 0).all()
    raw, _ = ds.read(0)
    np.testing.assert_array_equal(image[:, :50, :70].numpy(), raw.astype(np.float32))


def test_resize_and_none_policies(odd_sized):
    image, label = OpenEarthMapDataset(odd_sized, "train", mean=0, std=1, size_policy="resize")[0]
    assert image.shape == (3, 64, 64) and label.shape == (64, 64)
    assert set(label.unique().tolist()) <= set(range(8)) | {IGNORE_INDEX}
    image, _ = OpenEarthMapDataset(odd_sized, "train", mean=0, std=1, size_policy="none")[0]
    assert image.shape == (3, 50, 70)
    with pytest.raises(TerraLiteError, match="size_policy must be one of"):
        OpenEarthMapDataset(odd_sized, "train", size_policy="crop")


def test_transform_runs_before_padding(odd_sized):
    ds = OpenEarthMapDataset(odd_sized, "train", mean=0, std=1,
                             transform=RandomCrop(40, generator=torch.Generator().manual_seed(0)))
    image, label = ds[0]
    assert image.shape == (3, 64, 64) and (label[40:] == IGNORE_INDEX).all()


def test_missing_files_raise_or_are_skipped(synthetic_root, tmp_path):
    root = tmp_path / "oem"
    shutil.copytree(synthetic_root, root)
    image_path, label_path = list_samples(root, "train")[0][1]
    image_path.unlink()
    label_path.unlink()
    with pytest.raises(TerraLiteError, match=rf"2 file\(s\) listed in .*train\.txt are missing: .*images/{image_path.name}, .*labels/{image_path.name}.*skip_missing"):
        OpenEarthMapDataset(root, "train")
    with pytest.warns(UserWarning, match=rf"skipped 2 missing file.*{image_path.name}"):
        ds = OpenEarthMapDataset(root, "train", skip_missing=True)
    assert len(ds) == 3 and ds.missing == [image_path, label_path]


def test_labels_optional_only_for_test_split(synthetic_root, tmp_path):
    root = tmp_path / "oem"
    shutil.copytree(synthetic_root, root)
    for split in ("val", "test"):
        for _, label_path in list_samples(root, split)[0]:
            label_path.unlink()
    with pytest.raises(TerraLiteError, match="missing"):
        OpenEarthMapDataset(root, "val")
    ds = OpenEarthMapDataset(root, "test", mean=0, std=1)
    assert ds.samples[0][1] is None and (ds[0][1] == IGNORE_INDEX).all()


def test_real_houston_tile(fixtures_dir):
    ds = OpenEarthMapDataset(fixtures_dir / "openearthmap", "test", mean=0, std=1, require_labels=True)
    image, label = ds[0]
    with rasterio.open(ds.samples[0][0]) as src:
        raw = src.read()
    assert image.shape == (3, 1024, 1024)
    np.testing.assert_array_equal(image.numpy(), raw.astype(np.float32))
    counts = torch.bincount(label.flatten(), minlength=256)
    assert counts[IGNORE_INDEX] == 183
    assert set(torch.nonzero(counts[:8]).flatten().tolist()) == {1, 2, 3, 4, 5, 7}
