"""Latency runners, one class per runtime, under one interface (:class:`terralite.benchmark.runners.base.Runner`).

``RUNNERS`` maps a runtime name to its class: ``torch``, ``onnxruntime``, ``tensorrt``. Build one with
``build_runner(runtime, model, size=..., in_channels=..., device=..., precision=..., tta=..., **options)``
and call ``measure(warmup, iters)``. ``onnxruntime`` also times an existing ONNX file (e.g. an int8 graph
from ``terralite quantize``): ``build_runner("onnxruntime", None, onnx_path=FILE, ...)``.
"""

from __future__ import annotations

from terralite.benchmark.runners.base import LatencyStats, Runner
from terralite.benchmark.runners.onnxruntime_runner import OnnxRuntimeRunner
from terralite.benchmark.runners.tensorrt_runner import TensorRTRunner
from terralite.benchmark.runners.torch_runner import TorchRunner
from terralite.registry import Registry

RUNNERS = Registry("runtime")
for _cls in (TorchRunner, OnnxRuntimeRunner, TensorRTRunner):
    RUNNERS.register(_cls.name, _cls)


def build_runner(runtime: str, model, **kwargs) -> Runner:
    """The runner of ``runtime`` for ``model`` (unknown runtimes list the valid ones); ``model`` is None
    for a runner of an ONNX file (``onnx_path=``)."""
    return RUNNERS.get(runtime)(model, **kwargs)


__all__ = ["RUNNERS", "LatencyStats", "Runner", "TorchRunner", "OnnxRuntimeRunner", "TensorRTRunner", "build_runner"]
