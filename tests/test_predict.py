"""Tiled georeferenced mapping: terralite.predict and ``terralite predict``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from torch import nn

from terralite.checkpoint import save_checkpoint
from terralite.cli import main
from terralite.data.classes import PALETTE
from terralite.models import build_model
from terralite.predict import blend_ramp, predict_raster, predictor_from_module, tile_offsets

sys.path.insert(0, str(Path(__file__).parent / "engine"))
from tiny_model import NAME as TINY, register  # noqa: E402  (the engine tests' tiny baseline)

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
NORM3 = {"bands": None, "mean": [120.0, 110.0, 100.0], "std": [50.0, 45.0, 40.0]}


def write_raster(path: Path, array: np.ndarray, nodata=None, crs="EPSG:32618") -> Path:
    count, height, width = array.shape
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=array.dtype.name, crs=crs,
                   transform=from_origin(500000.0, 4200000.0, 0.5, 0.5), nodata=nodata)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
    return path


def random_image(height: int, width: int, bands: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # smooth-ish content so that a conv net's decisions are not pure noise
    base = rng.integers(0, 255, (bands, height // 8 + 1, width // 8 + 1)).astype(np.float32)
    image = np.kron(base, np.ones((1, 8, 8), dtype=np.float32))[:, :height, :width]
    image += rng.normal(0, 10, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def pointwise_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Conv2d(3, 8, 1)


def conv_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3, padding=1))


def whole_image_classes(model: nn.Module, image: np.ndarray, norm: dict = NORM3) -> np.ndarray:
    mean = torch.tensor(norm["mean"])[:, None, None]
    std = torch.tensor(norm["std"])[:, None, None]
    x = (torch.from_numpy(image).float() - mean) / std
    with torch.no_grad():
        return (model.eval()(x[None]).argmax(1)[0] + 1).numpy().astype(np.uint8)


def read_map(path: Path):
    with rasterio.open(path) as src:
        return src.read(1), src.profile, src.colormap(1), src.crs, src.transform


def test_tile_offsets_cover_evenly_with_at_least_the_overlap():
    assert tile_offsets(100, 128, 96) == [0]
    starts = tile_offsets(20000, 1024, 896)
    assert starts[0] == 0 and starts[-1] == 20000 - 1024
    steps = [b - a for a, b in zip(starts, starts[1:])]
    assert max(steps) <= 896 and max(steps) - min(steps) <= 1  # overlap >= 128 everywhere, nearly equal


def test_blend_ramp_is_positive_and_flat_inside():
    ramp = blend_ramp(64, 16)
    assert ramp.min() > 0 and ramp.max() == 1.0 and ramp[0] == ramp[-1] and ramp[32] == 1.0


def test_map_has_input_georeference_values_and_colour_table(tmp_path):
    image = random_image(96, 160)
    src = write_raster(tmp_path / "in.tif", image)
    predictor = predictor_from_module(conv_model(), NORM3, name="tiny", device="cpu")
    summary = predict_raster(predictor, src, tmp_path / "map.tif", tile=64, overlap=16, batch=2,
                             preview=tmp_path / "map.png", progress=False)
    classes, profile, colormap, crs, transform = read_map(tmp_path / "map.tif")
    with rasterio.open(src) as ref:
        assert crs == ref.crs and transform == ref.transform and classes.shape == (ref.height, ref.width)
    assert profile["dtype"] == "uint8" and profile["count"] == 1 and profile["tiled"]
    assert classes.min() >= 1 and classes.max() <= 8
    for value in range(9):
        assert colormap[value][:3] == PALETTE[value]
    assert summary["tiles"] == len(tile_offsets(96, 64, 48)) * len(tile_offsets(160, 64, 48))
    assert (tmp_path / "map.png").stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "map.png", "map.tif", "map.tif.aux.xml"]  # no temp files


@pytest.mark.parametrize("shape", [(200, 300), (113, 50), (40, 70), (64, 64)])
def test_tiled_prediction_equals_whole_image(tmp_path, shape):
    # A pointwise model gives the same logits in every tile: tiling, blending, the carried overlaps and the
    # block-row writes must reproduce the whole-image prediction exactly (113 px: three tile rows with
    # wide overlaps; 40x70 and 113x50: narrower than a tile, mapped through a padded tile).
    image = random_image(*shape, seed=1)
    src = write_raster(tmp_path / "in.tif", image)
    model = pointwise_model()
    predict_raster(predictor_from_module(model, NORM3, device="cpu"), src, tmp_path / "map.tif",
                   tile=64, overlap=16, batch=3, progress=False)
    tiled = read_map(tmp_path / "map.tif")[0]
    np.testing.assert_array_equal(tiled, whole_image_classes(model, image))


def test_blending_leaves_no_seams_for_a_conv_net(tmp_path):
    image = random_image(192, 192, seed=2)
    src = write_raster(tmp_path / "in.tif", image)
    model = conv_model()
    predict_raster(predictor_from_module(model, NORM3, device="cpu"), src, tmp_path / "map.tif",
                   tile=64, overlap=32, progress=False)
    tiled = read_map(tmp_path / "map.tif")[0]
    whole = whole_image_classes(model, image)
    # Only pixels at the raster border see zero padding in the whole-image run, as in the tiled one;
    # inside, the blend hands over far from each tile's edge, so the maps agree almost everywhere.
    assert (tiled == whole).mean() > 0.995


def test_nodata_pixels_map_to_zero(tmp_path):
    image = random_image(128, 128, seed=3)
    image[:, :, :70] = 0  # a whole tile column and a half of nodata
    src = write_raster(tmp_path / "in.tif", image, nodata=0)
    predict_raster(predictor_from_module(conv_model(), NORM3, device="cpu"), src, tmp_path / "map.tif",
                   tile=64, overlap=16, progress=False)
    classes = read_map(tmp_path / "map.tif")[0]
    assert (classes[:, :70] == 0).all()
    assert (classes[:, 70:] >= 1).all()


class FailingModel(nn.Module):
    """Works for the probe and the first tiles, then fails: an interrupted mapping."""

    def __init__(self, fail_after: int, exc: type[BaseException]):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.calls = 0
        self.fail_after = fail_after
        self.exc = exc

    def forward(self, x):
        self.calls += 1
        if self.calls > self.fail_after:
            raise self.exc("stopped mid-way")
        return self.conv(x)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_interrupted_mapping_leaves_no_output(tmp_path, exc):
    src = write_raster(tmp_path / "in.tif", random_image(300, 300, seed=4))
    out_dir = tmp_path / "maps"
    out_dir.mkdir()
    predictor = predictor_from_module(FailingModel(fail_after=12, exc=exc), NORM3, device="cpu")
    with pytest.raises(exc, match="stopped mid-way"):
        predict_raster(predictor, src, out_dir / "map.tif", tile=64, overlap=16, progress=False)
    assert list(out_dir.iterdir()) == []


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    register()
    spec = {"kind": "baseline", "name": TINY, "in_channels": 3, "num_classes": 8}
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    return save_checkpoint(path, spec, build_model(spec).state_dict(), input=NORM3)


def test_cli_maps_with_a_checkpoint(tmp_path, checkpoint, capsys):
    src = write_raster(tmp_path / "in.tif", random_image(64, 96, seed=5))
    rc = main(["predict", str(checkpoint), str(src), "--out", str(tmp_path / "map.tif"), "--tile", "64",
               "--overlap", "16", "--tta", "hflip", "--quiet"])
    assert rc == 0
    assert "Mpx/s" in capsys.readouterr().out
    classes, profile, _, _, _ = read_map(tmp_path / "map.tif")
    assert classes.shape == (64, 96) and 1 <= classes.min() and classes.max() <= 8


def test_library_call_maps_like_the_cli_with_batches(tmp_path, checkpoint, capsys):
    from terralite.benchmark.mapping import map_raster

    src = write_raster(tmp_path / "in.tif", random_image(64, 96, seed=5))
    summary = map_raster(checkpoint, src, tmp_path / "lib.tif", tile=64, overlap=16, batch_size=2, progress=False)
    assert summary["output"] == str(tmp_path / "lib.tif") and summary["tiles"] == 2
    # --batch is the old spelling of --batch-size
    assert main(["predict", str(checkpoint), str(src), "--out", str(tmp_path / "cli.tif"), "--tile", "64",
                 "--overlap", "16", "--batch", "2", "--quiet"]) == 0
    assert (read_map(tmp_path / "lib.tif")[0] == read_map(tmp_path / "cli.tif")[0]).all()


def test_tensorrt_runtime_without_tensorrt_is_a_clear_error(tmp_path, checkpoint, capsys):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    src = write_raster(tmp_path / "in.tif", random_image(64, 64))
    rc = main(["predict", str(checkpoint), str(src), "--out", str(tmp_path / "map.tif"), "--tile", "64",
               "--runtime", "tensorrt", "--quiet"])
    assert rc == 2 and "TensorRT is not installed" in capsys.readouterr().err
    assert not (tmp_path / "map.tif").exists()


def test_cli_bad_inputs_give_one_line_errors(tmp_path, checkpoint, capsys):
    not_raster = tmp_path / "notes.tif"
    not_raster.write_text("not a raster")
    four_bands = write_raster(tmp_path / "four.tif", random_image(64, 64, bands=4))
    good = write_raster(tmp_path / "good.tif", random_image(64, 64))
    cases = [
        (not_raster, tmp_path / "a.tif", "notes.tif"),
        (four_bands, tmp_path / "b.tif", "has 4 bands but model"),
        (good, tmp_path / "missing" / "c.tif", "does not exist"),
    ]
    for src, out, message in cases:
        rc = main(["predict", str(checkpoint), str(src), "--out", str(out), "--tile", "64", "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert message in err and len(err.strip().splitlines()) == 1
        assert not out.exists()


def test_band_selection_maps_multiband_input(tmp_path):
    image = random_image(64, 64, bands=5, seed=6)
    src = write_raster(tmp_path / "five.tif", image)
    norm = dict(NORM3, bands=[3, 1, 0])
    model = pointwise_model()
    predict_raster(predictor_from_module(model, norm, device="cpu"), src, tmp_path / "map.tif", tile=64,
                   overlap=0, progress=False)
    np.testing.assert_array_equal(read_map(tmp_path / "map.tif")[0], whole_image_classes(model, image[[3, 1, 0]]))


def test_real_openearthmap_tile_keeps_georeference(tmp_path):
    tile = FIXTURES / "openearthmap" / "houston" / "images" / "houston_16.tif"
    if not tile.is_file():
        pytest.skip("real fixtures (../shared/fixtures) not present")
    predictor = predictor_from_module(conv_model(), NORM3, name="tiny", device="cpu")
    predict_raster(predictor, tile, tmp_path / "houston_map.tif", tile=256, overlap=32, batch=4, progress=False)
    classes, profile, colormap, crs, transform = read_map(tmp_path / "houston_map.tif")
    with rasterio.open(tile) as ref:
        assert crs == ref.crs and transform == ref.transform and classes.shape == (ref.height, ref.width)
    assert classes.min() >= 0 and classes.max() <= 8 and colormap[8][:3] == PALETTE[8]
    with rasterio.open(tmp_path / "houston_map.tif") as src:
        assert src.overviews(1) == [2, 4]  # down to 256 px, for viewers and the preview
