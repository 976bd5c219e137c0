import pytest
import torch

from terralite.benchmark.export import export_onnx, verify_onnx
from terralite.errors import TerraLiteError


def test_export_fixed_and_verify(tiny, tmp_path):
    path = export_onnx(tiny, tmp_path / "tiny.onnx", 32, 3)
    assert path.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx"]  # no temp files left
    assert verify_onnx(tiny, path, torch.randn(1, 3, 32, 32)) < 1e-5


def test_export_dynamic_runs_other_shapes(tiny, tmp_path):
    path = export_onnx(tiny, tmp_path / "tiny.onnx", 32, 3, dynamic=True)
    assert verify_onnx(tiny, path, torch.randn(2, 3, 64, 96)) < 1e-5


def test_dynamic_export_refuses_baked_shapes(tmp_path):
    class Baked(torch.nn.Module):
        def forward(self, x):
            return x.reshape(1, 3, 32 * 32).softmax(-1).reshape(1, 3, 32, 32)  # sizes fixed in the code

    with pytest.raises(TerraLiteError, match="export with a fixed size"):
        export_onnx(Baked(), tmp_path / "baked.onnx", 32, 3, dynamic=True)
    assert not any(tmp_path.iterdir())


def test_verify_missing_file(tiny, tmp_path):
    with pytest.raises(TerraLiteError, match="does not exist"):
        verify_onnx(tiny, tmp_path / "none.onnx", torch.zeros(1, 3, 32, 32))
