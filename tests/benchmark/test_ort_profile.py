"""ONNX Runtime's per-operator times (benchmark.ort_profile) for a float and an int8 graph."""

import torch

from terralite.benchmark.export import export_onnx
from terralite.benchmark.ort_profile import op_time_profile


def test_op_time_profile_names_the_operators_run(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Upsample(scale_factor=2, mode="bilinear")).eval()
    path = export_onnx(net, tmp_path / "net.onnx", 32, 3)
    profile = op_time_profile(path, (1, 3, 32, 32), runs=2)
    assert "Conv" in profile or "FusedConv" in profile  # the kernels ORT ran, by operator type
    assert all(ms >= 0 for ms in profile.values()) and sum(profile.values()) > 0
    assert list(profile.values()) == sorted(profile.values(), reverse=True)
