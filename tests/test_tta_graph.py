"""TTA inside the ONNX graph (terralite.tta_graph) gives the logits of eager TTA (terralite.tta)."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from terralite.benchmark.export import export_onnx
from terralite.errors import TerraLiteError
from terralite.tta import tta_forward
from terralite.tta_graph import GRAPH_TTA_MODES, tta_graph, tta_session_bytes


class NotFlipInvariant(torch.nn.Module):
    """Asymmetric kernels and a bilinear resize: every view gives different logits."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 6, (1, 3), padding=(0, 1))
        self.conv2 = torch.nn.Conv2d(6, 4, (3, 1), stride=2, padding=(1, 0))

    def forward(self, x):
        y = self.conv2(torch.relu(self.conv1(x)))
        return torch.nn.functional.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=True)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return NotFlipInvariant().eval()


def _run(proto_or_bytes, x):
    data = proto_or_bytes if isinstance(proto_or_bytes, (bytes, str)) else proto_or_bytes.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("mode", [m for m in GRAPH_TTA_MODES if m != "none"])
def test_graph_tta_equals_eager_tta(net, tmp_path, mode, dynamic):
    network_batch = 2 if mode == "hflip-batched" else 1
    path = export_onnx(net, tmp_path / "net.onnx", 32, 3, dynamic=dynamic, batch=network_batch)
    graph = tta_graph(onnx.load(str(path)), mode)
    onnx.checker.check_model(graph, full_check=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = tta_forward(net, x, "hflip" if mode == "hflip-batched" else mode).numpy()
        plain = net(x).numpy()
    got = _run(graph, x)
    assert got.shape == (1, 4, 32, 32)
    assert np.abs(got - expected).max() < 1e-4
    assert np.abs(got - 2 * plain).max() > 1e-2  # the views really differ: a wrong flip would show
    # weights are shared by the passes, not copied
    assert len(graph.graph.initializer) == len(onnx.load(str(path)).graph.initializer)
    # flips commute with the final bilinear resize: the views merge at low resolution and it runs once;
    # quarter turns keep one resize per view
    resizes = sum(node.op_type == "Resize" for node in graph.graph.node)
    assert resizes == {"d4": 8, "hflip-batched": 1}.get(mode, 1)


class EndsInNearest(NotFlipInvariant):
    """A nearest-neighbour final resize does not commute with a flip: the merge stays at full resolution."""

    def forward(self, x):
        y = self.conv2(torch.relu(self.conv1(x)))
        return torch.nn.functional.interpolate(y, size=x.shape[-2:], mode="nearest")


def test_a_final_resize_that_does_not_commute_with_flips_runs_per_view(tmp_path):
    torch.manual_seed(0)
    net = EndsInNearest().eval()
    path = export_onnx(net, tmp_path / "net.onnx", 32, 3)
    graph = tta_graph(onnx.load(str(path)), "hflip")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = tta_forward(net, x, "hflip").numpy()
    assert np.abs(_run(graph, x) - expected).max() < 1e-4
    assert sum(node.op_type == "Resize" for node in graph.graph.node) == 2


def test_none_is_the_graph_itself_and_odd_batched_is_refused(net, tmp_path):
    path = export_onnx(net, tmp_path / "net.onnx", 32, 3)
    assert tta_session_bytes(path, "none") == str(path)
    with pytest.raises(TerraLiteError, match="even batch"):
        tta_graph(onnx.load(str(path)), "hflip-batched")
    with pytest.raises(TerraLiteError, match="unknown TTA mode"):
        tta_graph(onnx.load(str(path)), "vflip")


def test_predict_onnx_tta_runs_in_the_graph(net, tmp_path):
    """predict --tta on an ONNX file: one session run per tile batch, same logits as eager TTA."""
    from terralite.predict import _load_onnxruntime

    path = export_onnx(net, tmp_path / "net.onnx", 32, 3, dynamic=True)
    predictor = _load_onnxruntime(path, "cpu", "hflip", {"mean": [0.0] * 3, "std": [1.0] * 3})
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        expected = tta_forward(net, x, "hflip").numpy()
    assert np.abs(predictor.forward(x.numpy()) - expected).max() < 1e-4
    d4 = _load_onnxruntime(path, "cpu", "d4", {"mean": [0.0] * 3, "std": [1.0] * 3})
    with pytest.raises(TerraLiteError, match="square"):
        d4.forward(x.numpy())
