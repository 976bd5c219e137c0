"""Built FasterSeg networks: ONNX export equals PyTorch; OEM-preset size checks."""

import numpy as np
import pytest
import torch

from terralite.search_spaces.fasterseg.space import FasterSegSearchSpace


def test_onnx_matches_pytorch(tmp_path):
    pytest.importorskip("onnxruntime")
    from terralite.benchmark.export import export_onnx, verify_onnx

    space = FasterSegSearchSpace.from_preset("tiny", in_channels=4)
    net = space.build(space.sample(np.random.default_rng(3))).eval()
    path = export_onnx(net, tmp_path / "net.onnx", 64, 4)
    assert verify_onnx(net, path, torch.randn(1, 4, 64, 64)) < 1e-4


def _deployed_params(net):
    # auxiliary heads run only in training: not part of the deployed network
    return sum(p.numel() for name, p in net.named_parameters() if not name.startswith("aux"))


def test_oem_params_student_vs_teacher():
    # parameters do not depend on the input size: count them without running anything
    space = FasterSegSearchSpace.from_preset("oem")
    rng = np.random.default_rng(0)
    students = [_deployed_params(space.build(space.sample(rng))) for _ in range(3)]
    teachers = [_deployed_params(space.build(space.sample(rng, role="teacher"))) for _ in range(3)]
    lightest = _deployed_params(space.build(space.min_arch()))
    assert 1.0e6 < lightest < 4.0e6
    assert all(1.5e6 < n < 10e6 for n in students)
    assert min(teachers) > max(students) * 0.9 and np.mean(teachers) > np.mean(students)


@pytest.mark.slow
def test_oem_student_gmacs_at_1024():
    from terralite.benchmark.profiler import profile_model

    space = FasterSegSearchSpace.from_preset("oem")
    row = profile_model(space.build(space.min_arch()).eval(), size=1024, in_channels=3)
    assert 5 < row["gmacs"] < 20
