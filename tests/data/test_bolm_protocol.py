"""The BOLM large-raster protocol on a generated scene: windows, spatial split, class merge, inputs, commands."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from rasterio.windows import Window

from terralite.data.large_raster import BOLM_MERGE, box_to_pixels, stride_of, tile_offsets, window_offsets
from terralite.data.registry import DataConfig, build_dataset, dataset_stats
from terralite.errors import TerraLiteError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
from tiny_model import NAME as TINY, register  # noqa: E402  (the engine tests' tiny baseline)

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """A 1500 px RGB scene (label, image, data.yaml, scene.yaml) with 129 px windows."""
    from terralite.data.synth_scene import write_scene

    out = write_scene(tmp_path_factory.mktemp("bolm") / "scene", size=1500)
    _set_window(out / "data.yaml", 129)
    return out


@pytest.fixture(scope="module")
def s2_scene(tmp_path_factory) -> Path:
    """A 384 px Sentinel-2-like scene (band files at 10/20/60 m) with 64 px windows."""
    from terralite.data.synth_scene import write_scene

    out = write_scene(tmp_path_factory.mktemp("bolm-s2") / "scene", size=384, sentinel2=True)
    _set_window(out / "data.yaml", 64)
    text = (out / "data.yaml").read_text()
    assert "\ninputs: rgb\n" in text
    (out / "data.yaml").write_text(text.replace("\ninputs: rgb\n", "\ninputs: ndvi\n"))  # an index input
    return out


def _set_window(path: Path, window: int) -> None:
    text = path.read_text().replace("window: 513", f"window: {window}")
    path.write_text(text)


def _data(scene: Path, **fields) -> DataConfig:
    data = DataConfig.from_value(scene / "data.yaml")
    for key, value in fields.items():
        setattr(data, key, value)
    return data


# ---- windows ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [513, 514, 1000, 6000, 48906])
def test_window_counts_513_overlap_075_and_non_overlapping(length):
    stride = stride_of(513, 0.75)
    assert stride == 128
    starts = window_offsets(length, 513, stride)
    # every stride-th start, plus one flush with the end when the stride does not land there
    expected = (length - 513) // 128 + 1 + (1 if (length - 513) % 128 else 0)
    assert len(starts) == expected and starts[-1] == length - 513 and starts[0] == 0
    assert all(b - a <= 128 for a, b in zip(starts, starts[1:]))
    tiles = tile_offsets(length, 513)
    assert len(tiles) == -(-length // 513)  # ceil: the last one is padded past the edge
    assert all(b - a == 513 for a, b in zip(tiles, tiles[1:]))


def test_train_and_test_windows_never_cross_the_split_boundary(scene):
    data = _data(scene)
    train, test = build_dataset(data, "train"), build_dataset(data, "test")
    with rasterio.open(scene / "label.tif") as src:
        r0, c0, r1, c1 = box_to_pixels(data.region_box, src.transform, src.height, src.width)
    assert (r0, c0, r1, c1) == (500, 500, 1000, 1000)  # the centre third of 1500 px
    assert len(test) == 16  # 129 px tiles with centres 580.5, 709.5, 838.5, 967.5 per axis
    for w in test.windows:
        assert r0 <= w.row_off + 64.5 < r1 and c0 <= w.col_off + 64.5 < c1
    covered = np.zeros((1500, 1500), dtype=bool)  # pixels of any test window
    for w in test.windows:
        covered[w.row_off:w.row_off + 129, w.col_off:w.col_off + 129] = True
    covered[r0:r1, c0:c1] = True
    assert len(train) > 500
    for w in train.windows:
        assert not covered[w.row_off:w.row_off + 129, w.col_off:w.col_off + 129].any(), w
        assert w.row_off % 32 == 0 or w.row_off == 1500 - 129  # stride 32 (75 % overlap of 129), last flush


def test_merged_class_histogram_equals_the_11_class_one_remapped(scene):
    test = build_dataset(_data(scene), "test")
    merged = np.zeros(test.num_classes, dtype=np.int64)
    raw = np.zeros(12, dtype=np.int64)
    with rasterio.open(scene / "label.tif") as src:
        for i, w in enumerate(test.windows):
            _, target = test[i]
            values = target.numpy()[:129, :129]
            merged += np.bincount(values[values != test.ignore_index].ravel(), minlength=test.num_classes)
            raw += np.bincount(src.read(1, window=Window(w.col_off, w.row_off, 129, 129)).ravel(), minlength=12)
    remapped = np.zeros(5, dtype=np.int64)
    for value, target in BOLM_MERGE.items():
        remapped[target] += raw[value]
    assert test.class_names == ("farmland", "water", "forest", "built-up", "meadow")
    assert merged.tolist() == remapped.tolist()  # Unrecognized (11) and no data (0) are in neither count


def test_class_merge_mapping_from_yaml(scene, tmp_path):
    mapping = {1: 0, 2: 1, 3: 1, 4: 2, 5: 2, 6: 2, 7: 2, 8: 2, 9: 0, 10: 0, 11: None}
    data = _data(scene, class_merge=mapping, class_names=["green", "wet", "built"])
    test = build_dataset(data, "test")
    assert test.class_names == ("green", "wet", "built") and test.num_classes == 3
    _, target = test[0]
    assert set(np.unique(target.numpy()).tolist()) <= {0, 1, 2, test.ignore_index}
    with pytest.raises(TerraLiteError, match="training ids 0..K-1"):
        build_dataset(_data(scene, class_merge={1: 0, 2: 5}), "test")


def test_region_mask_and_box_exclusive_and_box_off_the_image(scene):
    with pytest.raises(TerraLiteError, match="not both"):
        build_dataset(_data(scene, region_mask=str(scene / "label.tif")), "test")
    with pytest.raises(TerraLiteError, match="does not overlap"):
        build_dataset(_data(scene, region_box=[0, 0, 10, 10]), "test")


def test_nodata_pixels_are_ignored(tmp_path):
    from terralite.data.raster import write_geotiff
    from affine import Affine

    image = np.full((3, 96, 96), 100, dtype=np.uint16)
    image[:, :10, :] = 0  # nodata stripe
    label = np.ones((96, 96), dtype=np.uint8)
    t = Affine(10, 0, 0, 0, -10, 960)
    write_geotiff(tmp_path / "img.tif", image, crs="EPSG:32646", transform=t, nodata=0)
    write_geotiff(tmp_path / "lab.tif", label, crs="EPSG:32646", transform=t)
    data = DataConfig(kind="large-raster", image=str(tmp_path / "img.tif"), label=str(tmp_path / "lab.tif"),
                      window=64, region_box=[0, 0, 960, 480])
    test = build_dataset(data, "test")
    for i, w in enumerate(test.windows):
        img, target = test[i]
        rows = slice(0, max(0, 10 - w.row_off))
        assert (target[rows] == test.ignore_index).all()
        assert np.allclose(img[:, rows].numpy(), 0)  # nodata reads as the mean
    assert test.mean == pytest.approx([100.0] * 3)  # statistics skip nodata


# ---- inputs ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("inputs, channels", [("ndvi", 3), (["B12", "B11", "B8"], 3), ("swi", 3), ("rgb,ndwi_mcfeeters", 6)])
def test_sentinel2_band_files_inputs(s2_scene, inputs, channels):
    data = _data(s2_scene, inputs=inputs)
    train = build_dataset(data, "train")
    image, target = train[0]
    assert image.shape == (channels, 64, 64) and target.shape == (64, 64)
    assert train.input_record()["inputs"] == (inputs.split(",") if isinstance(inputs, str) else inputs)
    with rasterio.open(s2_scene / "label.tif") as src:  # the 10 m grid
        assert (train.height, train.width) == (src.height, src.width)


def test_ndvi_on_band_files_matches_direct_computation(s2_scene):
    from terralite.data.scene import open_scene

    with open_scene(s2_scene / "bands", inputs="ndvi") as scene:
        ndvi, valid = scene.read(Window(0, 0, 384, 384))
    with rasterio.open(s2_scene / "bands" / "SCENE_B08.tif") as b8, rasterio.open(s2_scene / "bands" / "SCENE_B04.tif") as b4:
        nir, red = b8.read(1).astype(np.float32), b4.read(1).astype(np.float32)
    assert valid.all()
    assert np.allclose(ndvi[0], (nir - red) / (nir + red + 1e-6), atol=1e-6)
    assert np.array_equal(ndvi[0], ndvi[2])  # an index is replicated to 3 channels
    with open_scene(s2_scene / "bands", inputs=["B11"]) as scene:  # 20 m band on the 10 m grid
        b11, _ = scene.read(Window(0, 0, 384, 384))
    with rasterio.open(s2_scene / "bands" / "SCENE_B11.tif") as src:
        assert src.width == 192
        coarse = src.read(1).astype(np.float32)
    assert b11.shape == (1, 384, 384)
    assert abs(float(b11.mean()) - float(coarse.mean())) < 0.01 * float(coarse.mean())  # bilinear keeps the mean


def test_bad_inputs_are_one_clear_line(s2_scene, scene):
    with pytest.raises(TerraLiteError, match="unknown input 'ndbi'"):
        build_dataset(_data(s2_scene, inputs="ndbi"), "train")
    with pytest.raises(TerraLiteError, match="need band"):
        build_dataset(_data(scene, inputs="ndvi"), "train")  # an RGB image has no NIR
    with pytest.raises(TerraLiteError, match="either data.inputs"):
        build_dataset(_data(s2_scene, inputs="ndvi", bands=[0]), "train")


# ---- synth-scene -----------------------------------------------------------------------------------------------

def test_synth_scene_is_deterministic_georeferenced_and_refuses_a_non_empty_folder(tmp_path):
    from terralite.cli import main

    assert main(["data", "synth-scene", str(tmp_path / "a"), "--size", "300", "--sentinel2"]) == 0
    assert main(["data", "synth-scene", str(tmp_path / "b"), "--size", "300", "--sentinel2"]) == 0
    for name in ["label.tif", "bands/SCENE_B04.tif", "bands/SCENE_B11.tif", "bands/SCENE_B01.tif"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with rasterio.open(tmp_path / "a" / "label.tif") as src:
        assert src.crs.to_epsg() == 32646 and src.res == (10.0, 10.0) and (src.width, src.height) == (300, 300)
        values = set(np.unique(src.read(1)).tolist())
        assert values <= set(range(1, 12)) and len(values) >= 5
    with rasterio.open(tmp_path / "a" / "bands" / "SCENE_B01.tif") as src:
        assert src.res == (60.0, 60.0) and src.width == 50
    before = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert main(["data", "synth-scene", str(tmp_path / "a"), "--size", "300"]) == 2  # a user error
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == before
    (tmp_path / "empty").mkdir()
    assert main(["data", "synth-scene", str(tmp_path / "empty"), "--size", "100"]) == 0
    assert (tmp_path / "empty" / "image.tif").is_file()


# ---- preset and commands ---------------------------------------------------------------------------------------

def test_bolm_preset():
    from terralite.engine.presets import resolve_train_config

    cfg = resolve_train_config("bolm")
    assert cfg.model == "deeplabv3plus-resnet50" and cfg.batch_size == 8 and cfg.epochs == 25 and cfg.crop == 0
    assert (cfg.data.kind, cfg.data.window, cfg.data.overlap, cfg.data.class_merge) == ("large-raster", 513, 0.75, "bolm")


def test_train_preset_bolm_then_eval_and_predict_the_whole_scene(s2_scene, tmp_path, capsys):
    from terralite.cli import main

    register()
    run = tmp_path / "run"
    cfg = yaml.safe_load((s2_scene / "scene.yaml").read_text())
    assert cfg == {"preset": "bolm", "data": "data.yaml"}
    assert main(["train", "--preset", "bolm", "--config", str(s2_scene / "scene.yaml"), "--model", TINY,
                 "--set", "data.overlap=0.5", "--set", "steps_per_epoch=2", "--epochs", "1", "--batch-size", "2",
                 "--device", "cpu", "--out", str(run)]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["inputs"] == "ndvi" and saved["data"]["window"] == 64 and saved["preset"] == "bolm"
    assert saved["data"]["overlap"] == 0.5  # --set adjusts the data config the YAML names
    capsys.readouterr()
    assert main(["eval", str(run / "last.pt"), "--data", str(s2_scene / "data.yaml"), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in ("farmland", "water", "forest", "built-up", "meadow"):
        assert any(line.startswith(name) and "IoU" in line and "F1" in line for line in lines), lines
    assert any(line.startswith("mIoU") and "mF1" in line for line in lines)
    out = tmp_path / "map.tif"
    assert main(["predict", str(run / "last.pt"), str(s2_scene / "bands"), "--out", str(out), "--tile", "128",
                 "--device", "cpu", "--quiet"]) == 0
    with rasterio.open(out) as m, rasterio.open(s2_scene / "label.tif") as lab:
        assert (m.crs, m.transform, m.shape) == (lab.crs, lab.transform, lab.shape)
        classes = m.read(1)
    assert classes.min() >= 1 and classes.max() <= 5  # every pixel mapped (no nodata), 5 merged classes
    # the class names travel with the network: checkpoint → map tags and category table → ONNX metadata
    from terralite.checkpoint import load_checkpoint

    merged = ["farmland", "water", "forest", "built-up", "meadow"]
    assert load_checkpoint(run / "last.pt")["class_names"] == merged
    with rasterio.open(out) as m:
        assert [m.tags(1)[f"CLASS_{i}"] for i in range(1, 6)] == merged
    assert "<Category>farmland</Category>" in (tmp_path / "map.tif.aux.xml").read_text()
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", str(run / "last.pt"), "--out", str(onnx_path), "--size", "64"]) == 0
    from terralite.benchmark.onnx_file import read_onnx_file

    assert read_onnx_file(onnx_path).metadata["class_names"] == merged


def test_stats_of_a_scene_with_an_index_input(s2_scene):
    stats = dataset_stats(_data(s2_scene, inputs="ndwi_gao"), "train")
    assert stats["inputs"] == ["ndwi_gao"] and stats["bands"]["names"] == ["ndwi_gao:0", "ndwi_gao:1", "ndwi_gao:2"]
    assert -1 <= min(stats["bands"]["min"]) and max(stats["bands"]["max"]) <= 1
    assert stats["class_pixels"]["ignored"] < sum(stats["class_pixels"].values()) * 0.01


# ---- the real Sentinel-2 fixture -------------------------------------------------------------------------------

def _fixture_yaml(fixtures_dir: Path, tmp_path: Path, inputs: str) -> Path:
    folder = next((fixtures_dir / "sentinel2/BigEarthNet/BigEarthNet-S2").glob("*/*"))
    path = tmp_path / f"s2-{inputs}.yaml"
    path.write_text(yaml.safe_dump({"kind": "large-raster", "image": str(folder), "inputs": inputs, "window": 64}))
    return path


@pytest.mark.parametrize("inputs", ["ndvi", "swi", "ndwi_mcfeeters", "rvi"])
def test_real_sentinel2_band_files_through_data_stats(fixtures_dir, tmp_path, capsys, inputs):
    import json

    from terralite.cli import main

    capsys.readouterr()
    assert main(["data", "stats", str(_fixture_yaml(fixtures_dir, tmp_path, inputs)), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["inputs"] == [inputs] and len(stats["bands"]["mean"]) == 3
    low, high = stats["bands"]["min"], stats["bands"]["max"]
    if inputs in ("ndvi", "ndwi_mcfeeters"):  # normalised differences are defined in [-1, 1]
        assert -1 <= min(low) and max(high) <= 1 and max(high) > min(low)
    elif inputs == "rvi":
        assert min(low) >= 0
    else:  # SWI = B12, B8, B4 reflectances (x 10000) on the 10 m grid
        assert stats["bands"]["names"] == ["swi:0", "swi:1", "swi:2"] and 0 < min(low) and max(high) < 20000


def _index_checkpoint(tmp_path: Path, inputs: list[str]) -> Path:
    from terralite.checkpoint import save_checkpoint
    from terralite.models import build_model

    register()
    spec = {"kind": "baseline", "name": TINY, "in_channels": 3, "num_classes": 5}
    record = {"bands": None, "inputs": inputs, "mean": [0.0] * 3 if inputs != ["swi"] else [2000.0] * 3,
              "std": [1.0] * 3 if inputs != ["swi"] else [1000.0] * 3}
    return save_checkpoint(tmp_path / f"{inputs[0]}.pt", spec, build_model(spec).state_dict(), input=record)


def test_real_sentinel2_predict_with_ndvi_from_band_files_and_its_onnx_export(fixtures_dir, tmp_path):
    from terralite.cli import main
    from terralite.onnx_metadata import read_metadata_props

    folder = next((fixtures_dir / "sentinel2/BigEarthNet/BigEarthNet-S2").glob("*/*"))
    ckpt = _index_checkpoint(tmp_path, ["ndvi"])
    out = tmp_path / "ndvi.tif"
    assert main(["predict", str(ckpt), str(folder), "--out", str(out), "--tile", "64", "--device", "cpu", "--quiet"]) == 0
    reference = next(folder.glob("*_B02.tif"))  # a 10 m band: the common grid
    with rasterio.open(out) as m, rasterio.open(reference) as ref:
        assert (m.crs, m.transform, m.shape) == (ref.crs, ref.transform, (120, 120))
        torch_map = m.read(1)
    onnx = tmp_path / "ndvi.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(onnx), "--size", "64", "--dynamic-size"]) == 0
    import json

    record = json.loads(read_metadata_props(onnx)["terralite.input"])
    assert record["inputs"] == ["ndvi"]
    out2 = tmp_path / "ndvi-onnx.tif"
    assert main(["predict", str(onnx), str(folder), "--out", str(out2), "--tile", "64", "--quiet"]) == 0
    with rasterio.open(out2) as m:
        assert (m.read(1) == torch_map).mean() > 0.99  # same inputs derived from the scene


def test_real_sentinel2_predict_with_swi_from_a_13_band_file(fixtures_dir, tmp_path):
    from terralite.cli import main

    tile = next((fixtures_dir / "sentinel2/EuroSAT_MS").glob("*/*.tif"))
    ckpt = _index_checkpoint(tmp_path, ["swi"])
    out = tmp_path / "swi.tif"
    assert main(["predict", str(ckpt), str(tile), "--out", str(out), "--tile", "64", "--device", "cpu", "--quiet"]) == 0
    with rasterio.open(out) as m, rasterio.open(tile) as src:
        assert (m.crs, m.transform, m.shape) == (src.crs, src.transform, src.shape)
        assert m.read(1).min() >= 1


# ---- metrics ---------------------------------------------------------------------------------------------------

def test_f1_per_class_equals_an_independent_computation():
    import torch

    from terralite.metrics import ConfusionMatrix

    rng = np.random.default_rng(3)
    target = rng.integers(0, 5, size=(4, 50, 50))
    target[rng.random(target.shape) < 0.1] = 255  # ignored pixels
    pred = np.where(rng.random(target.shape) < 0.6, target % 255, rng.integers(0, 5, size=target.shape))
    pred[pred == 255] = 0
    cm = ConfusionMatrix(5, ignore_index=255)
    cm.update(torch.from_numpy(pred[:2]), torch.from_numpy(target[:2]))
    cm.update(torch.from_numpy(pred[2:]), torch.from_numpy(target[2:]))
    result = cm.compute()
    valid = target != 255
    expected_f1, expected_iou = [], []
    for k in range(5):
        tp = np.sum((pred == k) & (target == k) & valid)
        fp = np.sum((pred == k) & (target != k) & valid)
        fn = np.sum((pred != k) & (target == k) & valid)
        precision, recall = tp / (tp + fp), tp / (tp + fn)
        expected_f1.append(2 * precision * recall / (precision + recall))
        expected_iou.append(tp / (tp + fp + fn))
    assert result["f1"] == pytest.approx(expected_f1, abs=1e-12)
    assert result["iou"] == pytest.approx(expected_iou, abs=1e-12)
    assert result["mf1"] == pytest.approx(np.mean(expected_f1)) and result["miou"] == pytest.approx(np.mean(expected_iou))
