"""ONNX Runtime: the network exported to ONNX (fixed shape), run by the CPU or CUDA execution provider."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmark.export import INPUT_NAME, OUTPUT_NAME, cached_export
from benchmark.memory import FreeMemoryDrop
from benchmark.runners.base import Runner
from terralite.errors import TerraLiteError


class OnnxRuntimeRunner(Runner):
    """ONNX Runtime runner (fp32).

    The model is exported at ``network_batch x C x size x size`` into a temporary folder, or into
    ``onnx_dir``: a folder private to this model, where an export of the same shape is reused (so the TTA
    modes ``none`` and ``hflip`` of one model share one export). On ``cuda`` the CUDA execution provider runs it
    with input and output bound to torch CUDA tensors (I/O binding, no host copies); on ``cpu`` the CPU
    provider runs it on the tensor's memory. ``threads`` sets intra-op threads (default: ORT's choice).
    """

    name = "onnxruntime"

    def __init__(self, model: nn.Module, *, onnx_dir: str | Path | None = None, threads: int | None = None, **conditions):
        super().__init__(model, **conditions)
        import onnxruntime as ort

        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise TerraLiteError(
                    "ONNX Runtime has no CUDA execution provider here; install onnxruntime-gpu "
                    "(pip install terralite[gpu]) or use --device cpu"
                )
            # the free device memory before the session exists: the session's own use is measured against it
            self._free_before = torch.cuda.mem_get_info(self.device)[0]
            providers = [("CUDAExecutionProvider", {"device_id": self.device.index or 0}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        self._tmp = None
        if onnx_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="terralite-ort-")
            onnx_dir = self._tmp.name
        self.onnx_path = cached_export(self.model, onnx_dir, self.size, self.in_channels, self.network_batch)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.onnx_path), options, providers=providers)
        if self.device.type == "cuda":
            self._binding = self.session.io_binding()
            num_classes = self.session.get_outputs()[0].shape[1]
            self._out = torch.empty(self.network_batch, num_classes, self.size, self.size, device=self.device)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu":
            return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: x.contiguous().numpy()})[0])
        x = x.contiguous()
        index = self.device.index or 0
        self._binding.bind_input(INPUT_NAME, "cuda", index, _numpy_dtype(x.dtype), tuple(x.shape), x.data_ptr())
        self._binding.bind_output(OUTPUT_NAME, "cuda", index, _numpy_dtype(self._out.dtype), tuple(self._out.shape), self._out.data_ptr())
        # ORT runs on its own stream; make it see the flips queued on torch's stream first
        torch.cuda.current_stream(self.device).synchronize()
        self.session.run_with_iobinding(self._binding)
        return self._out

    def _memory_meter(self):
        if self.device.type == "cuda":
            return FreeMemoryDrop(self.device, self._free_before)
        return super()._memory_meter()


def _numpy_dtype(dtype: torch.dtype):
    return {torch.float32: np.float32, torch.float16: np.float16}[dtype]
