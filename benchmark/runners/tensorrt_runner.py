"""TensorRT: an fp32 or fp16 engine built from the fixed-shape ONNX export, run on torch's CUDA stream."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from terralite.benchmark.export import INPUT_NAME, OUTPUT_NAME, cached_export
from terralite.benchmark.memory import FreeMemoryDrop
from terralite.benchmark.runners.base import Runner
from terralite.benchmark.tensorrt_engine import build_engine, load_engine, require_tensorrt
from terralite.errors import TerraLiteError


class TensorRTRunner(Runner):
    """TensorRT runner. The engine's input is float32 in both precisions (fp16 engines cast inside).

    ``onnx_dir``: as for :class:`~terralite.benchmark.runners.onnxruntime_runner.OnnxRuntimeRunner`.
    """

    name = "tensorrt"
    precisions = ("fp32", "fp16")

    def __init__(self, model: nn.Module, *, workspace_gb: float = 4.0, onnx_dir: str | Path | None = None, **conditions):
        super().__init__(model, **conditions)
        self._free_before = torch.cuda.mem_get_info(self.device)[0]
        with tempfile.TemporaryDirectory(prefix="terralite-trt-") as tmp:
            onnx_path = cached_export(self.model, onnx_dir or tmp, self.size, self.in_channels, self.network_batch)
            self.engine = load_engine(build_engine(onnx_path, precision=self.precision, workspace_gb=workspace_gb))
        self.context = self.engine.create_execution_context()
        out_shape = tuple(self.engine.get_tensor_shape(OUTPUT_NAME))
        self._out = torch.empty(out_shape, device=self.device)
        self.context.set_tensor_address(OUTPUT_NAME, self._out.data_ptr())

    @classmethod
    def check(cls, device: torch.device, precision: str) -> None:
        require_tensorrt()  # first: the clear message even on machines without a GPU
        super().check(device, precision)
        if device.type != "cuda":
            raise TerraLiteError("the TensorRT runtime needs --device cuda")

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        self.context.set_tensor_address(INPUT_NAME, x.data_ptr())
        # enqueue on torch's current stream, so flips, engine and merge are ordered without host syncs
        if not self.context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise TerraLiteError("TensorRT failed to run the engine (see the TensorRT messages above)")
        return self._out

    def _memory_meter(self):
        return FreeMemoryDrop(self.device, self._free_before)
