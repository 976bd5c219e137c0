"""TensorRT engines built from ONNX graphs (fp32 or fp16), for latency runs and deployment.

TensorRT is optional: :func:`require_tensorrt` imports it or raises a :class:`TerraLiteError` that says
how to install it. Engines are specific to the GPU model and TensorRT version they were built with.
"""

from __future__ import annotations

from pathlib import Path

from terralite.atomic import write_bytes_atomic
from terralite.errors import TerraLiteError

TRT_PRECISIONS = ("fp32", "fp16")


def require_tensorrt():
    """Return the ``tensorrt`` module, or explain how to get it."""
    try:
        import tensorrt
    except ImportError:
        raise TerraLiteError(
            "TensorRT is not installed: on a machine with an NVIDIA GPU run `pip install terralite[tensorrt]` "
            "(the tensorrt wheel from PyPI), or choose --runtime torch or onnxruntime"
        ) from None
    return tensorrt


def build_engine(onnx_path: str | Path, engine_path: str | Path | None = None, precision: str = "fp32", workspace_gb: float = 4.0) -> bytes:
    """Build a serialized engine from a fixed-shape ONNX graph; write it atomically to ``engine_path`` if given."""
    trt = require_tensorrt()
    if precision not in TRT_PRECISIONS:
        raise TerraLiteError(f"TensorRT engines are built in {', '.join(TRT_PRECISIONS)}, not {precision!r}")
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise TerraLiteError(f"ONNX file {onnx_path} does not exist; export it first with terralite export")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch: the only mode of TensorRT >= 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TerraLiteError(f"TensorRT cannot parse {onnx_path}: {errors[:500]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * 2**30))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TerraLiteError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT messages above)")
    data = bytes(serialized)
    if engine_path is not None:
        write_bytes_atomic(engine_path, data)
    return data


def load_engine(engine: bytes | str | Path):
    """Deserialize an engine from bytes or from a ``.engine`` file."""
    trt = require_tensorrt()
    data = engine if isinstance(engine, bytes) else Path(engine).read_bytes()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    deserialized = runtime.deserialize_cuda_engine(data)
    if deserialized is None:
        raise TerraLiteError("TensorRT cannot load this engine: it was built for another GPU or TensorRT version; rebuild it")
    return deserialized
