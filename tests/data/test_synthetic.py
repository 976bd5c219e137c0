import time

import numpy as np
import pytest
import rasterio
from numpy.lib.stride_tricks import sliding_window_view

from terralite.data.openearthmap import list_samples, read_split_list
from terralite.data.synthetic import generate_dataset, generate_scene
from terralite.errors import TerraLiteError


def test_layout_split_lists_and_georeferencing(synthetic_root):
    splits = {s: read_split_list(synthetic_root, s) for s in ("train", "val", "test")}
    assert [len(v) for v in splits.values()] == [4, 1, 1]
    names = sorted(n for v in splits.values() for n in v)
    assert names == sorted(p.name for p in synthetic_root.glob("*/images/*.tif"))
    assert {p.parent.parent.name for p in synthetic_root.glob("*/labels/*.tif")} == {"alderbrook", "brindlemoor"}
    assert not (synthetic_root / "test.txt").read_text().endswith("\n")
    interleaves = set()
    for image_path, label_path in list_samples(synthetic_root, None)[0]:
        with rasterio.open(image_path) as img, rasterio.open(label_path) as lab:
            assert (img.count, img.dtypes[0], lab.count, lab.dtypes[0]) == (3, "uint8", 1, "uint8")
            assert img.crs.to_epsg() == 4326 and lab.crs == img.crs and lab.transform == img.transform
            assert 0 < img.transform.a < 1e-4 and -90 < img.transform.f < 90
            interleaves.add(img.interleaving.name.lower())
    assert interleaves == {"pixel", "band"}


def test_every_class_and_some_unknown_pixels():
    counts = np.zeros(9, dtype=np.int64)
    for tile in range(4):
        image, label = generate_scene(96, np.random.default_rng([0, tile]))
        assert image.shape == (3, 96, 96) and image.dtype == np.uint8 and label.dtype == np.uint8
        tile_counts = np.bincount(label.ravel(), minlength=9)
        assert (tile_counts[1:] > 0).all(), f"tile {tile} lacks a class: {tile_counts}"
        counts += tile_counts
    assert 0 < counts[0] < 0.05 * counts.sum()
    assert counts.max() < 0.6 * counts.sum()  # no class swamps the scene


def test_same_seed_identical_files_other_seed_differs(tmp_path, synthetic_root):
    again = generate_dataset(tmp_path / "again", tiles=6, size=64, seed=0)
    other = generate_dataset(tmp_path / "other", tiles=6, size=64, seed=1)
    def listing(root):  # the data cache other tests may have written beside the files is not part of the dataset
        return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and ".terralite-cache" not in p.parts)

    files = listing(synthetic_root)
    assert files == listing(again)
    for rel in files:
        assert (synthetic_root / rel).read_bytes() == (again / rel).read_bytes(), rel
    tif = next(r for r in files if r.suffix == ".tif")
    assert (synthetic_root / tif).read_bytes() != (other / tif).read_bytes()


def _features(image):
    # per pixel: colour, 5x5 local mean and local standard deviation (texture)
    x = image.astype(np.float32)
    windows = sliding_window_view(np.pad(x, ((0, 0), (2, 2), (2, 2)), mode="edge"), (5, 5), axis=(1, 2))
    return np.concatenate([x, windows.mean((-1, -2)), windows.std((-1, -2))]).reshape(9, -1).T


def test_learnable_but_not_trivial():
    """A nearest-centroid classifier on colour and texture beats chance clearly, but is far from perfect."""
    scenes = [generate_scene(96, np.random.default_rng([5, t])) for t in range(6)]
    x = [_features(i) for i, _ in scenes]
    y = [lab.ravel() for _, lab in scenes]
    x_train, y_train, x_test, y_test = np.concatenate(x[:4]), np.concatenate(y[:4]), np.concatenate(x[4:]), np.concatenate(y[4:])
    keep_train, keep_test = y_train > 0, y_test > 0
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train[keep_train] - mu) / sd, (x_test[keep_test] - mu) / sd
    y_train, y_test = y_train[keep_train], y_test[keep_test]
    centroids = np.stack([x_train[y_train == c].mean(0) for c in range(1, 9)])
    pred = np.argmin(((x_test[:, None] - centroids[None]) ** 2).sum(-1), axis=1) + 1
    accuracy = (pred == y_test).mean()
    majority = np.bincount(y_test).max() / y_test.size
    assert accuracy > max(0.45, 1.5 * majority) and accuracy < 0.95


def test_fast_enough():
    start = time.perf_counter()
    generate_scene(512, np.random.default_rng(0))
    assert time.perf_counter() - start < 5.0  # about 0.1 s on a quiet core; generous for a shared machine


def test_bad_arguments(tmp_path):
    with pytest.raises(TerraLiteError, match="tiles must be at least 1"):
        generate_dataset(tmp_path / "x", tiles=0)
    with pytest.raises(TerraLiteError, match="size must be at least 32"):
        generate_dataset(tmp_path / "x", size=16)
    with pytest.raises(TerraLiteError, match="does not exist"):
        generate_dataset(tmp_path / "no" / "such" / "x", tiles=1, size=32)
