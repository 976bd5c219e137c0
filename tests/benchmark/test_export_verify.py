"""terralite.benchmark.export_verify: the library behind ``terralite export`` (verified, self-describing files)."""

import sys
from pathlib import Path

import pytest
import torch

from terralite.benchmark.export_verify import export_model, training_data, verification_tile
from terralite.checkpoint import save_checkpoint
from terralite.data.openearthmap import OpenEarthMapDataset
from terralite.errors import TerraLiteError
from terralite.models import build_model

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from tiny_model import NAME as TINY, register  # noqa: E402  (the engine tests' tiny baseline)


def test_verification_tile_from_a_dataset_root_is_normalised_and_cropped(synthetic_root):
    record = OpenEarthMapDataset(synthetic_root, "train").input_record()
    tile = verification_tile(synthetic_root, record, 3, 32, "m")
    assert tile.shape == (1, 3, 32, 32) and tile.dtype == torch.float32
    assert abs(float(tile.mean())) < 3  # normalised, not raw pixel values
    with pytest.raises(TerraLiteError, match="takes 4"):
        verification_tile(synthetic_root, record, 4, 32, "m")
    assert verification_tile(None, record, 3, 32, "m") is None


def test_training_data_is_the_checkpoint_root_when_it_exists(synthetic_root, tmp_path):
    assert training_data({"config": {"data": str(synthetic_root)}}) == synthetic_root
    assert training_data({"config": {"data": {"root": str(synthetic_root)}}}) == synthetic_root  # a data config
    assert training_data({"config": {"data": str(tmp_path / "gone")}}) is None
    assert training_data(None) is None


def test_export_model_reports_each_verification(synthetic_root, tmp_path):
    register()
    spec = {"kind": "baseline", "name": TINY, "in_channels": 3, "num_classes": 8}
    torch.manual_seed(0)
    record = OpenEarthMapDataset(synthetic_root, "train").input_record()
    ckpt = save_checkpoint(tmp_path / "m.pt", spec, build_model(spec).state_dict(), input=record,
                           config={"data": str(synthetic_root)})
    report = export_model(str(ckpt), tmp_path / "m.onnx", size=64)
    assert set(report["max_abs_diff"]) == {"random", "real"}  # the real tile comes from the training data
    assert max(report["max_abs_diff"].values()) < 1e-3
    assert report["path"] == str(tmp_path / "m.onnx") and report["lines"][-1].startswith("wrote ")
    with pytest.raises(TerraLiteError, match="unknown export format"):
        export_model(str(ckpt), tmp_path / "x.onnx", fmt="tflite", size=64)
    with pytest.raises(TerraLiteError, match="--fp16 applies to TensorRT"):
        export_model(str(ckpt), tmp_path / "x.onnx", fp16=True, size=64)
