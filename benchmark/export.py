"""ONNX export of any TerraLite network, and a numerical check of the exported graph.

``export_onnx`` uses the ``torch.export``-based exporter (the default since PyTorch 2.9), simplifies the
graph with onnxslim (constant folding, fused shape arithmetic), validates it with ``onnx.checker`` and
writes a single self-contained ``.onnx`` file atomically. The graph has one input ``input``
``(B, C, H, W)`` float32 and one output ``logits`` ``(B, num_classes, H, W)``. The ``terralite export`` job
built on these (metadata, verification on a real tile, TensorRT engines) is :mod:`terralite.benchmark.export_verify`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from terralite.atomic import atomic_path
from terralite.errors import TerraLiteError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 18  # the torch.export-based exporter implements opset >= 18; lower ones are down-converted


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's progress prints and warnings (they are not errors; failures still raise)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    size: int | tuple[int, int],
    in_channels: int,
    dynamic: bool = False,
    opset: int = DEFAULT_OPSET,
    batch: int = 1,
    simplify: bool = True,
) -> Path:
    """Export ``model`` (eval mode, float32, CPU) to ``path``.

    ``size`` is the traced height/width (an int for square tiles). ``dynamic=True`` makes batch, height
    and width symbolic (for tiled prediction of any tile size); ``dynamic=False`` fixes the graph to
    ``batch x in_channels x H x W``, which lets runtimes plan memory and kernels for that one shape.
    """
    import onnx

    height, width = (size, size) if isinstance(size, int) else size
    model = copy.deepcopy(model).eval().float().cpu()  # a copy: .float()/.cpu() would change the caller's model
    x = torch.zeros(batch, in_channels, height, width)
    dim = torch.export.Dim.DYNAMIC
    # one entry per positional argument of forward: the input's batch, height and width
    dynamic_shapes = ({0: dim, 2: dim, 3: dim},) if dynamic else None
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(
                model, (x,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=dynamic_shapes, external_data=False,
            )
    except Exception as exc:  # the exporter raises many types; the user needs the first line and the model
        raise TerraLiteError(f"ONNX export of {type(model).__name__} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from exc
    proto = program.model_proto
    if simplify:
        import onnxslim

        with _quiet():
            proto = onnxslim.slim(proto)
    onnx.checker.check_model(proto, full_check=True)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
        if dynamic:
            _check_shape_generic(tmp, model, batch + 1, in_channels, height + 32, width + 32)
    return Path(path)


def _check_shape_generic(path: Path, model: nn.Module, batch: int, in_channels: int, height: int, width: int) -> None:
    """Run a dynamic graph at another shape: some networks (attention reshapes) get their sizes baked in."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    try:
        out = session.run(None, {INPUT_NAME: np.zeros((batch, in_channels, height, width), np.float32)})[0]
    except Exception as exc:  # ORT raises its own Fail/InvalidArgument types
        raise TerraLiteError(
            f"the dynamic ONNX graph of {type(model).__name__} does not run at {batch}x{in_channels}x{height}x{width} "
            f"(the exporter fixed a size inside the network: {str(exc).splitlines()[0][-160:]}); export with a fixed size instead"
        ) from None
    if out.shape[0] != batch or out.shape[2:] != (height, width):
        raise TerraLiteError(f"the dynamic ONNX graph of {type(model).__name__} returns {out.shape} for input {batch}x{in_channels}x{height}x{width}; export with a fixed size instead")


def verify_onnx(model: nn.Module, onnx_path: str | Path, inputs: torch.Tensor) -> float:
    """Largest absolute difference between the logits of ``model`` and of the ONNX graph on ``inputs``.

    Runs the graph with ONNX Runtime on the CPU; ``inputs`` is a float32 ``(B, C, H, W)`` tensor whose
    shape the graph accepts.
    """
    import onnxruntime as ort

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise TerraLiteError(f"ONNX file {onnx_path} does not exist; export it first with terralite export")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = inputs.detach().float().cpu()
    with torch.no_grad():
        expected = copy.deepcopy(model).eval().float().cpu()(x).numpy()
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    if got.shape != expected.shape:
        raise TerraLiteError(f"ONNX graph {onnx_path} returns shape {got.shape}, the model {expected.shape}; re-export it")
    return float(np.max(np.abs(got - expected)))


def cached_export(model: nn.Module, folder: str | Path, size: int, in_channels: int, batch: int) -> Path:
    """The fixed-shape export of ``model`` in ``folder`` (a folder private to this model), made if absent."""
    path = Path(folder) / f"model_{batch}x{in_channels}x{size}x{size}.onnx"
    return path if path.is_file() else export_onnx(model, path, size, in_channels, batch=batch)
