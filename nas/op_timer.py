"""Timing of one small module in isolation, for latency lookup tables.

``torch`` goes through the benchmark's ``TorchRunner`` (the same timing loop as ``terralite bench``).
``onnxruntime`` exports the module with the TorchScript-based exporter — about 0.1 s per operator instead of
the seconds of the benchmark's dynamo export + onnxslim, which matters for the ~700 entries of a table —
and times an ONNX Runtime session built with the benchmark runner's options (all graph optimisations on).
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time
import warnings

import torch
from torch import nn

from terralite.errors import TerraLiteError

RUNTIMES = ("onnxruntime", "torch")


def _onnx_bytes(module: nn.Module, x: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=17, input_names=["x"], output_names=["y"])
    return buf.getvalue()


def ort_session(module: nn.Module, x: torch.Tensor, device: torch.device, threads: int | None = None):
    """An ONNX Runtime session of ``module`` traced at ``x``'s shape."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise TerraLiteError("ONNX Runtime has no CUDA execution provider here; install onnxruntime-gpu or use --device cpu")
        providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    return ort.InferenceSession(_onnx_bytes(module.eval().cpu(), x.cpu()), options, providers=providers)


def time_module(module: nn.Module, shape: tuple[int, int, int, int], runtime: str, device: torch.device,
                warmup: int = 5, iters: int = 20, threads: int | None = None) -> float:
    """Median latency (ms) of one forward of ``module`` on a random input of ``shape`` (B, C, H, W)."""
    if runtime not in RUNTIMES:
        raise TerraLiteError(f"unknown runtime {runtime!r} for latency tables; valid: {', '.join(RUNTIMES)}")
    module = module.eval()
    b, c, h, w = shape
    if runtime == "torch":
        if h != w:
            raise TerraLiteError(f"latency tables are measured at square sizes, got {h}x{w}")
        from terralite.benchmark.runners import build_runner

        runner = build_runner("torch", module, size=h, in_channels=c, batch=b, device=device)
        return runner.measure(warmup, iters).latency_ms_median
    x = torch.randn(shape)
    session = ort_session(module, x, device, threads)
    feed = {"x": x.numpy()}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        session.run(None, feed)  # returns host arrays, so the device work is finished when it returns
        times.append((time.perf_counter() - t0) * 1000.0)
    return float(statistics.median(times))

