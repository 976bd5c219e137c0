import numpy as np
import pytest
import rasterio

from terralite.data.classes import LABEL_NAMES
from terralite.data.openearthmap import list_samples
from terralite.data.stats import StatsAccumulator, compute_stats, format_stats
from terralite.errors import TerraLiteError


def test_stats_equal_a_direct_computation(synthetic_root):
    stats = compute_stats(synthetic_root, "train")
    images, labels = [], []
    for image_path, label_path in list_samples(synthetic_root, "train")[0]:
        with rasterio.open(image_path) as src:
            images.append(src.read().reshape(3, -1))
        with rasterio.open(label_path) as src:
            labels.append(src.read(1).ravel())
    image, label = np.concatenate(images, axis=1).astype(np.float64), np.concatenate(labels)
    valid = image[:, label != 0]
    assert list(stats) == ["num_images", "bands", "class_pixels"]
    assert stats["num_images"] == 4
    assert stats["bands"]["mean"] == pytest.approx(valid.mean(axis=1).tolist(), rel=1e-9)
    assert stats["bands"]["std"] == pytest.approx(valid.std(axis=1).tolist(), rel=1e-9)
    assert list(stats["class_pixels"]) == list(LABEL_NAMES)
    assert list(stats["class_pixels"].values()) == np.bincount(label, minlength=9).tolist()
    assert all(stats["class_pixels"][name] > 0 for name in LABEL_NAMES)


def test_all_splits_and_table(synthetic_root):
    stats = compute_stats(synthetic_root)
    assert stats["num_images"] == 6
    table = format_stats(stats)
    assert "agriculture land" in table and "images: 6" in table


def test_missing_images_raise_or_are_left_out(synthetic_root, tmp_path):
    import shutil

    root = tmp_path / "oem"
    shutil.copytree(synthetic_root, root)
    image_path, _ = list_samples(root, "train")[0][0]
    image_path.unlink()
    with pytest.raises(TerraLiteError, match=rf"missing: .*{image_path.name}"):
        compute_stats(root, "train")
    assert compute_stats(root, "train", skip_missing=True)["num_images"] == 3


def test_accumulator_is_stable_and_honours_nodata():
    rng = np.random.default_rng(0)
    acc = StatsAccumulator()
    chunks = [1e6 + rng.normal(0, 1, (2, 10, 10)) for _ in range(5)]
    for c in chunks:
        acc.add(c)
    allpix = np.concatenate([c.reshape(2, -1) for c in chunks], axis=1)
    assert acc.result()["bands"]["std"] == pytest.approx(allpix.std(axis=1).tolist(), rel=1e-6)
    nodata = StatsAccumulator()
    image = np.array([[[0, 10], [20, 30]]], dtype=np.uint16)
    nodata.add(image, nodata=0)
    assert nodata.result()["bands"]["mean"] == [20.0]
    with pytest.raises(TerraLiteError, match="has 2 bands but earlier images have 1"):
        nodata.add(np.zeros((2, 2, 2)), name="x.tif")
