"""Datasets by registry: both kinds, the statistics/check cache, DataConfig values, large-raster spatial splits."""

import json
import os
import shutil
import warnings

import numpy as np
import pytest
import torch
from affine import Affine

from terralite.data import stats as stats_module
from terralite.data.cache import CACHE_DIRNAME
from terralite.data.large_raster import (BOLM_MERGED_CLASSES, LargeRasterDataset, spatial_split_windows, stride_of)
from terralite.data.openearthmap import OpenEarthMapDataset, list_samples
from terralite.data.raster import write_geotiff
from terralite.data.registry import (DATASETS, DataConfig, build_dataset, check_data, dataset_problems, describe_data,
                                     prepare_data)
from terralite.errors import TerraLiteError

GRID = dict(crs="EPSG:32646", transform=Affine(2.22, 0, 230000, 0, -2.22, 2630000))


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    path = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(path))
    return path / "terralite"


@pytest.fixture
def oem(synthetic_root, tmp_path):
    root = tmp_path / "oem"
    shutil.copytree(synthetic_root, root, ignore=shutil.ignore_patterns(CACHE_DIRNAME))
    return root


@pytest.fixture
def raster(tmp_path):
    """A 150x200 image with BOLM labels 0..11 and a held-out block; returns (folder, image, label, mask)."""
    folder = tmp_path / "bolm"
    folder.mkdir()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (3, 150, 200), dtype=np.uint8)
    label = rng.integers(0, 12, (150, 200), dtype=np.uint8)
    mask = np.zeros((150, 200), dtype=np.uint8)
    mask[40:110, 60:160] = 1
    for name, array in (("image.tif", image), ("label.tif", label), ("mask.tif", mask)):
        write_geotiff(folder / name, array, **GRID)
    return folder, image, label, mask


def _raster_config(folder, **fields):
    values = dict(kind="large-raster", image=str(folder / "image.tif"), label=str(folder / "label.tif"),
                  region_mask=str(folder / "mask.tif"), window=32, overlap=0.5)
    values.update(fields)
    return DataConfig(**values)


def _same_samples(a, b, indices):
    assert len(a) == len(b)
    for i in indices:
        (xa, ya), (xb, yb) = a[i], b[i]
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


ORIGINALS = {"stats_of_samples": stats_module.stats_of_samples, "window_stats": LargeRasterDataset.window_stats}


def _counting(monkeypatch, owner, name):
    calls = []
    original = ORIGINALS[name]

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def _forbid(monkeypatch, owner, name):
    def fail(*args, **kwargs):
        raise AssertionError(f"{name} was called although its result is cached")

    monkeypatch.setattr(owner, name, fail)


# ---- both kinds equal direct construction ---------------------------------------------------------------------

def test_openearthmap_equals_direct_construction(oem):
    data = DataConfig.from_value(str(oem))
    train = build_dataset(data, "train")
    direct = OpenEarthMapDataset(oem, "train")
    assert train.mean == direct.mean and train.std == direct.std  # bit-identical to the uncached statistics
    _same_samples(train, direct, range(len(direct)))
    assert train.input_record() == direct.input_record()
    assert (train.num_classes, train.ignore_index, len(train.palette)) == (8, 255, 8) and train.class_names[0] == "bareland"
    val = build_dataset(data, "val", input_record=train.input_record())
    assert val.mean == train.mean and val.std == train.std
    _same_samples(val, OpenEarthMapDataset(oem, "val", mean=train.mean, std=train.std), [0])
    picked = build_dataset(DataConfig(root=str(oem), bands=["blue", 0]), "train")
    assert picked.bands == [2, 0] and picked.mean == [direct.mean[2], direct.mean[0]]


def test_large_raster_equals_direct_construction(raster):
    folder, _, _, _ = raster
    data = _raster_config(folder)
    train = build_dataset(data, "train")
    windows = spatial_split_windows(folder / "image.tif", 32, 0.5, folder / "mask.tif", held_out=False)
    direct = LargeRasterDataset(folder / "image.tif", folder / "label.tif", window=32, windows=windows, size_policy="pad")
    assert train.mean == direct.mean and train.std == direct.std
    _same_samples(train, direct, [0, len(direct) // 2, len(direct) - 1])
    assert train.class_names == BOLM_MERGED_CLASSES and train.num_classes == 5 and train.ignore_index == 255
    assert train.input_record() == {"bands": None, "mean": direct.mean, "std": direct.std}
    # without a region mask, the training split is today's default grid, with today's statistics
    with pytest.warns(UserWarning, match="whole raster"):
        whole = build_dataset(_raster_config(folder, region_mask=None, overlap=0.75), "train")
    today = LargeRasterDataset(folder / "image.tif", folder / "label.tif", window=32, size_policy="pad")
    assert stride_of(32, 0.75) == today.stride and whole.windows == today.windows
    assert whole.mean == today.mean and whole.std == today.std
    _same_samples(whole, today, [0, len(today) - 1])


def test_large_raster_windows_past_the_edge_are_padded_and_ignored(raster):
    folder, image, _, _ = raster
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no region mask: the whole raster (tested above)
        val = build_dataset(_raster_config(folder, window=50, region_mask=None), "val")
        assert len(val) == 3 * 4  # 150x200 in non-overlapping 50 px windows
        val = build_dataset(_raster_config(folder, window=64, region_mask=None), "val")
    x, y = val[len(val) - 1]  # rows 128..191 of a 150-row raster
    assert x.shape == (3, 64, 64) and (y[150 - 128:] == 255).all() and (y[:, 200 - 192:] == 255).all()


# ---- the cache ----------------------------------------------------------------------------------------------------

def test_statistics_are_cached_and_invalidated(oem, monkeypatch):
    calls = _counting(monkeypatch, stats_module, "stats_of_samples")
    data = DataConfig(root=str(oem))
    first = build_dataset(data, "train")
    assert len(calls) == 1 and list((oem / CACHE_DIRNAME).glob("train-stats-*.json"))
    _forbid(monkeypatch, stats_module, "stats_of_samples")
    again = build_dataset(data, "train")
    assert again.mean == first.mean and again.std == first.std
    calls = _counting(monkeypatch, stats_module, "stats_of_samples")
    image = list_samples(oem, "train")[0][0][0]
    st = os.stat(image)
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same bytes, new mtime
    build_dataset(data, "train")
    assert len(calls) == 1
    label = list_samples(oem, "train")[0][1][1]
    pixels = np.zeros((64, 64), dtype=np.uint8)  # a new label: other valid pixels, another size
    pixels[:10] = 2
    write_geotiff(label, pixels, crs="EPSG:4326", transform=Affine(1e-5, 0.0, 10.0, 0.0, -1e-5, 50.0))
    changed = build_dataset(data, "train")
    assert len(calls) == 2
    uncached = OpenEarthMapDataset(oem, "train")
    assert changed.mean == uncached.mean and changed.std == uncached.std and changed.mean != first.mean


def test_large_raster_statistics_and_windows_are_cached(raster, monkeypatch):
    folder, _, _, _ = raster
    data = _raster_config(folder)
    first = build_dataset(data, "train")
    names = sorted(p.name.rsplit("-", 1)[0] for p in (folder / CACHE_DIRNAME).iterdir())
    assert names == ["image-train-stats", "image-train-windows"]
    _forbid(monkeypatch, LargeRasterDataset, "window_stats")
    monkeypatch.setattr("terralite.data.large_raster.spatial_split_windows", lambda *a, **k: pytest.fail("not cached"))
    again = build_dataset(data, "train")
    assert again.windows == first.windows and again.mean == first.mean and again.std == first.std
    # another band selection is another entry
    calls = _counting(monkeypatch, LargeRasterDataset, "window_stats")
    picked = build_dataset(_raster_config(folder, bands=[1]), "train")
    assert len(calls) == 1 and picked.mean == [first.mean[1]]
    monkeypatch.setattr("terralite.data.large_raster.spatial_split_windows", spatial_split_windows)
    st = os.stat(folder / "image.tif")  # a changed image: windows and statistics computed again
    os.utime(folder / "image.tif", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert build_dataset(data, "train").mean == first.mean and len(calls) == 2


def test_data_check_command_records_the_verdict(oem, monkeypatch, capsys):
    from terralite.cli import main

    assert main(["data", "check", str(oem)]) == 0 and capsys.readouterr().out.strip() == "OK: 6 images"
    monkeypatch.setattr("terralite.data.check.check_dataset", lambda *a: pytest.fail("verdict not recorded"))
    for split in ("train", "val", "test"):
        check_data(str(oem), split)


def test_corrupt_cache_file_is_ignored_and_rewritten(oem, monkeypatch):
    data = DataConfig(root=str(oem))
    first = build_dataset(data, "train")
    (entry,) = (oem / CACHE_DIRNAME).glob("train-stats-*.json")
    entry.write_text('{"format": 1, "name": "train-st')
    calls = _counting(monkeypatch, stats_module, "stats_of_samples")
    again = build_dataset(data, "train")
    assert len(calls) == 1 and again.mean == first.mean
    assert json.loads(entry.read_text())["value"]["bands"]["mean"] == first.mean


def test_read_only_dataset_uses_the_user_cache(oem, user_cache, monkeypatch):
    folders = [oem, *[p for p in oem.rglob("*") if p.is_dir()]]
    for folder in folders:
        folder.chmod(0o555)
    try:
        data = DataConfig(root=str(oem))
        first = build_dataset(data, "train")
        check_data(data, "train")
        assert not (oem / CACHE_DIRNAME).exists()
        entries = sorted(p.name.rsplit("-", 1)[0] for p in user_cache.rglob("*.json"))
        assert entries == ["train-check", "train-stats"]
        _forbid(monkeypatch, stats_module, "stats_of_samples")
        monkeypatch.setattr("terralite.data.check.check_dataset", lambda *a: pytest.fail("verdict not cached"))
        assert build_dataset(data, "train").mean == first.mean
        check_data(data, "train")
    finally:
        for folder in folders:
            folder.chmod(0o755)


def test_prepare_data_fills_the_cache(oem, raster, monkeypatch):
    folder, _, _, _ = raster
    prepare_data(str(oem), ["train", "val", None])
    prepare_data(_raster_config(folder), ["train", "val", "test"])
    _forbid(monkeypatch, stats_module, "stats_of_samples")
    _forbid(monkeypatch, LargeRasterDataset, "window_stats")
    monkeypatch.setattr("terralite.data.check.check_dataset", lambda *a: pytest.fail("verdict not cached"))
    monkeypatch.setattr("terralite.data.check.check_large_raster", lambda *a: pytest.fail("verdict not cached"))
    for split in ("train", "val"):
        check_data(str(oem), split)
        build_dataset(str(oem), split)
    for split in ("train", "val", "test"):
        check_data(_raster_config(folder), split)
        build_dataset(_raster_config(folder), split)


# ---- the check ----------------------------------------------------------------------------------------------------

def test_check_data_lists_problems_and_honours_skip_missing(oem):
    check_data(DataConfig(root=str(oem)), "train")
    (first, _), (second, second_label) = list_samples(oem, "train")[0][:2]
    first.unlink()
    with pytest.raises(TerraLiteError, match=rf"split 'train' of dataset .* has 1 problem\(s\): .*{first.name}.*--skip-missing"):
        check_data(DataConfig(root=str(oem)), "train")
    check_data(DataConfig(root=str(oem), skip_missing=True), "train")  # missing files are allowed...
    with pytest.raises(TerraLiteError, match="has 1 problem"):  # ...also when the verdict comes from the cache
        check_data(DataConfig(root=str(oem)), "train")
    shutil.copyfile(second, second_label)  # a 3-band label: not allowed, even with skip_missing
    with pytest.raises(TerraLiteError, match=rf"has 2 problem\(s\): {second_label}: label has 3 bands.*values outside"):
        check_data(DataConfig(root=str(oem), skip_missing=True), "train")
    with pytest.raises(TerraLiteError, match=r"has 3 problem\(s\)"):
        check_data(DataConfig(root=str(oem)), "train")


def test_large_raster_check(raster, tmp_path):
    folder, _, label, _ = raster
    check_data(_raster_config(folder), "train")
    bad = label.copy()
    bad[3, 3] = 40
    write_geotiff(folder / "label.tif", bad, **GRID)
    with pytest.raises(TerraLiteError, match=r"label\.tif: label values outside 0\.\.11: 40"):
        check_data(_raster_config(folder), "train")
    write_geotiff(folder / "mask.tif", np.zeros((150, 200), dtype=np.uint8), **GRID)
    problems = dataset_problems(_raster_config(folder), None)
    assert any("no nonzero pixel" in p.message for p in problems) and len(problems) == 2
    with pytest.raises(TerraLiteError, match="splits train, val, test"):
        check_data(_raster_config(folder), "train_mini")


# ---- DataConfig values ------------------------------------------------------------------------------------------

def test_data_config_from_values(tmp_path):
    assert DataConfig.from_value("/data/oem") == DataConfig(root="/data/oem")
    assert DataConfig.from_value(tmp_path).root == str(tmp_path)
    same = DataConfig(kind="large-raster", image="a.tif")
    assert DataConfig.from_value(same) is same
    assert DataConfig.from_value({"root": "x", "bands": [0, "red"], "skip_missing": True}) == \
        DataConfig(root="x", bands=[0, "red"], skip_missing=True)
    assert DataConfig.from_value({"root": "x", "bands": "red, 2"}).bands == ["red", "2"]
    (tmp_path / "bolm.yaml").write_text("kind: large-raster\nimage: rasters/image.tif\nlabel: /abs/label.tif\n"
                                        "window: 256\noverlap: 0\nclass_merge: null\n")
    cfg = DataConfig.from_value(str(tmp_path / "bolm.yaml"))
    assert cfg == DataConfig(kind="large-raster", image=str(tmp_path / "rasters" / "image.tif"), label="/abs/label.tif",
                             window=256, overlap=0.0, class_merge=None)
    (tmp_path / "typo.yml").write_text("kind: openearthmap\nroots: x\n")
    with pytest.raises(TerraLiteError, match=r"typo\.yml: unknown config key\(s\) data\.roots"):
        DataConfig.from_value(tmp_path / "typo.yml")
    with pytest.raises(TerraLiteError, match="data file .*nope.yaml does not exist"):
        DataConfig.from_value(tmp_path / "nope.yaml")


def test_unknown_kind_lists_the_valid_ones():
    assert {"openearthmap", "large-raster"} <= set(DATASETS.names())
    with pytest.raises(TerraLiteError, match=r"unknown dataset kind 'bolm'; valid names: large-raster, openearthmap"):
        DataConfig(kind="bolm")
    with pytest.raises(TerraLiteError, match="unknown dataset kind"):
        DataConfig.from_value({"kind": "geojson"})


def test_describe_data_is_one_line(oem, raster):
    folder, _, _, _ = raster
    assert describe_data(str(oem)) == f"openearthmap {oem}"
    text = describe_data(_raster_config(folder))
    assert "\n" not in text and "held-out region" in text and "32 px windows" in text
    assert "no region_mask: train, val and test all read the whole raster" in describe_data(_raster_config(folder, region_mask=None))
    with pytest.raises(TerraLiteError, match="data.image is not set"):
        build_dataset(DataConfig(kind="large-raster"), "train")
    with pytest.raises(TerraLiteError, match="data.root is not set"):
        build_dataset(DataConfig(), "train")


# ---- large-raster spatial splits --------------------------------------------------------------------------------

def _extent(w, height=150, width=200):
    return slice(w.row_off, min(w.row_off + w.height, height)), slice(w.col_off, min(w.col_off + w.width, width))


def _intersect(a, b):
    return (a.row_off < b.row_off + b.height and b.row_off < a.row_off + a.height
            and a.col_off < b.col_off + b.width and b.col_off < a.col_off + a.width)


@pytest.mark.parametrize("mask_scale", [1, 2])
def test_spatial_split_keeps_training_clear_of_the_held_out_region(raster, mask_scale):
    folder, _, _, mask = raster
    if mask_scale != 1:  # a coarser mask raster on the same extent
        coarse = mask[::mask_scale, ::mask_scale]
        write_geotiff(folder / "mask.tif", coarse, crs=GRID["crs"], transform=GRID["transform"] @ Affine.scale(mask_scale))
        mask = np.repeat(np.repeat(coarse, mask_scale, 0), mask_scale, 1)
    data = _raster_config(folder)
    train, val, test = (build_dataset(data, split) for split in ("train", "val", "test"))
    assert val.windows == test.windows and len(train) > 0 and len(val) > 0
    for w in train.windows:
        assert not mask[_extent(w)].any(), w  # no training window touches the held-out region
        assert not any(_intersect(w, v) for v in val.windows), w  # ...nor any evaluation window
    for i, a in enumerate(val.windows):  # evaluation windows never overlap, and are centred inside the region
        assert not any(_intersect(a, b) for b in val.windows[i + 1:])
        assert mask[min(a.row_off + 16, 149), min(a.col_off + 16, 199)]
    assert len(train) >= 10  # the mask leaves room: the split is not trivially empty


def test_evaluate_reads_the_dataset_classes(raster):
    from terralite.engine.evaluate import evaluate

    folder, _, _, _ = raster
    val = build_dataset(_raster_config(folder), "val")
    model = torch.nn.Conv2d(3, val.num_classes, 1)
    result = evaluate(model, val, device="cpu")
    assert result["classes"] == list(BOLM_MERGED_CLASSES) and result["tiles"] == len(val)


def test_data_cli_accepts_a_yaml_file(raster, oem, tmp_path, capsys):
    from terralite.cli import main

    folder, _, _, _ = raster
    yaml_file = folder / "bolm.yaml"
    yaml_file.write_text("kind: large-raster\nimage: image.tif\nlabel: label.tif\nregion_mask: mask.tif\nwindow: 32\n")
    assert main(["data", "check", str(yaml_file)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: 1 image, 32 px windows:") and "train windows" in out
    assert main(["data", "stats", str(yaml_file), "--split", "val", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert set(stats["class_pixels"]) == {*BOLM_MERGED_CLASSES, "ignored"} and len(stats["bands"]["mean"]) == 3
    (tmp_path / "oem.yaml").write_text(f"root: {oem}\n")
    assert main(["data", "check", str(tmp_path / "oem.yaml"), "--split", "train"]) == 0
    assert capsys.readouterr().out.strip() == "OK: 4 images"
    assert main(["data", "stats", str(tmp_path / "oem.yaml"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == stats_module.compute_stats(oem)
