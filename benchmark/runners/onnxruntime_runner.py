"""ONNX Runtime: the network exported to ONNX (fixed shape), or an existing ONNX file, run by the CPU or CUDA
execution provider."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from terralite.benchmark.export import cached_export
from terralite.benchmark.memory import FreeMemoryDrop
from terralite.benchmark.runners.base import Runner
from terralite.errors import TerraLiteError


class OnnxRuntimeRunner(Runner):
    """ONNX Runtime runner: fp32, or int8 for a quantised ONNX file.

    For a module, the model is exported at ``network_batch x C x size x size`` into a temporary folder, or
    into ``onnx_dir``: a folder private to this model, where an export of the same shape is reused (so the
    TTA modes ``none`` and ``hflip`` of one model share one export). With ``model=None`` and ``onnx_path``,
    the existing file is timed instead (see :func:`terralite.benchmark.onnx_file.session_source` for files with
    dynamic dimensions); ``precision`` must be the file's (``int8`` for a quantised graph). On ``cuda`` the
    CUDA execution provider runs it with input and output bound to torch CUDA tensors (I/O binding, no host
    copies); on ``cpu`` the CPU provider runs it on the tensor's memory. TTA is part of the graph
    (:mod:`terralite.tta_graph`): the timed call is one session run, flips and merge included.
    ``threads`` sets intra-op threads (default: ORT's choice).
    """

    name = "onnxruntime"
    precisions = ("fp32", "int8")
    times_onnx_files = True

    def __init__(self, model: nn.Module | None, *, onnx_path: str | Path | None = None, onnx_dir: str | Path | None = None,
                 threads: int | None = None, **conditions):
        if (model is None) == (onnx_path is None):
            raise TerraLiteError("the onnxruntime runner times either a module or an ONNX file (onnx_path), exactly one of them")
        super().__init__(model, **conditions)
        import onnxruntime as ort

        if onnx_path is not None:
            from terralite.benchmark.onnx_file import read_onnx_file, session_source

            info = read_onnx_file(onnx_path)
            if self.precision != info.precision:
                raise TerraLiteError(f"ONNX file {onnx_path} holds an {info.precision} graph; time it with precision "
                                     f"{info.precision}, not {self.precision}")
            self.onnx_path = Path(onnx_path)
            source = session_source(info, self.network_batch, info.channels(self.in_channels), self.size)
            num_classes = info.num_classes
        else:
            if self.precision != "fp32":
                raise TerraLiteError(f"precision {self.precision} on onnxruntime needs a quantised ONNX file "
                                     "(terralite quantize, then time MODEL.int8.onnx); a module is timed in fp32")
            self._tmp = None
            if onnx_dir is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="terralite-ort-")
                onnx_dir = self._tmp.name
            self.onnx_path = cached_export(self.model, onnx_dir, self.size, self.in_channels, self.network_batch)
            source, num_classes = str(self.onnx_path), None
        # the TTA views, passes and merge inside the graph: ONNX Runtime runs all of it on its threads
        source = _with_tta_graph(source, self.tta)
        if self.device.type == "cuda":
            # the free device memory before the session exists: the session's own use is measured against it
            self._free_before = torch.cuda.mem_get_info(self.device)[0]
            providers = [("CUDAExecutionProvider", {"device_id": self.device.index or 0}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(source, options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        if self.device.type == "cuda":
            if self.session.get_providers()[0] != "CUDAExecutionProvider":
                # ORT falls back to the CPU quietly when the CUDA provider fails to load (e.g. no cuDNN)
                raise TerraLiteError(
                    f"ONNX Runtime could not start its CUDA execution provider (session providers: "
                    f"{self.session.get_providers()}); check the CUDA/cuDNN libraries onnxruntime-gpu needs"
                )
            self._binding = self.session.io_binding()
            num_classes = num_classes or self.session.get_outputs()[0].shape[1]
            if not isinstance(num_classes, int):
                raise TerraLiteError(f"ONNX file {self.onnx_path}: the output's class dimension is not fixed and the file "
                                     "carries no TerraLite spec; the CUDA runner needs it to bind the output")
            self._out = torch.empty(self.batch, num_classes, self.size, self.size, device=self.device)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu":
            return torch.from_numpy(self.session.run([self.output_name], {self.input_name: x.contiguous().numpy()})[0])
        x = x.contiguous()
        index = self.device.index or 0
        self._binding.bind_input(self.input_name, "cuda", index, _numpy_dtype(x.dtype), tuple(x.shape), x.data_ptr())
        self._binding.bind_output(self.output_name, "cuda", index, _numpy_dtype(self._out.dtype), tuple(self._out.shape), self._out.data_ptr())
        # ORT runs on its own stream; make it see the flips queued on torch's stream first
        torch.cuda.current_stream(self.device).synchronize()
        self.session.run_with_iobinding(self._binding)
        return self._out

    @classmethod
    def check(cls, device: torch.device, precision: str) -> None:
        super().check(device, precision)
        import onnxruntime as ort

        if device.type == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise TerraLiteError(
                "ONNX Runtime has no CUDA execution provider here; install onnxruntime-gpu "
                "(pip install terralite[gpu]) or use --device cpu"
            )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Summed TTA logits ``(batch, classes, size, size)``: the graph holds the views and the merge."""
        return self._forward(x)

    def _memory_meter(self):
        if self.device.type == "cuda":
            return FreeMemoryDrop(self.device, self._free_before)
        return super()._memory_meter()


def _with_tta_graph(source: str | bytes, mode: str) -> str | bytes:
    """``source`` (a path or serialised graph) with the TTA views of ``mode`` inside (:func:`terralite.tta_graph.tta_graph`)."""
    if mode == "none":
        return source
    import onnx

    from terralite.tta_graph import tta_graph

    proto = onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(source)
    return tta_graph(proto, mode).SerializeToString()


def _numpy_dtype(dtype: torch.dtype):
    return {torch.float32: np.float32, torch.float16: np.float16}[dtype]
