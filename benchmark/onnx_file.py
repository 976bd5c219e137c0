"""An existing ONNX file as a benchmark subject: its input, precision, parameter count and TerraLite metadata.

``terralite export`` writes one ``(B, C, H, W)`` float32 input (static, or dynamic batch/height/width) and
the model spec, input normalisation and class names into ``metadata_props``; ``terralite quantize`` keeps
that metadata in its int8 QDQ file. Files from elsewhere work too, without the metadata.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

from terralite.errors import TerraLiteError

#: Operators that make a graph a quantised (int8) one.
QUANTISED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
                           "ConvInteger", "MatMulInteger"})


@dataclass
class OnnxFile:
    """What the benchmark needs to know of an ONNX file (read without loading its weights' data)."""

    path: Path
    input_name: str
    input_dims: tuple  # (B, C, H, W): ints where fixed, None where symbolic
    output_name: str
    num_classes: int | None  # the output's channel dimension (or the metadata spec's), None if unknown
    precision: str  # "int8" for a quantised graph, else "fp32"
    params: int  # weight and bias elements (see :func:`initializer_params`)
    metadata: dict = field(default_factory=dict)  # TerraLite metadata: spec, input, class_names ({} if none)

    @property
    def spec(self) -> dict | None:
        return self.metadata.get("spec")

    def channels(self, requested: int | None = None) -> int:
        """The input band count: the graph's fixed one (``requested`` must agree), else ``requested``, else the spec's."""
        fixed = self.input_dims[1]
        if fixed is not None:
            if requested is not None and requested != fixed:
                raise TerraLiteError(f"ONNX file {self.path} takes {fixed}-band input, not --in-channels {requested}")
            return fixed
        channels = requested or (self.spec or {}).get("in_channels")
        if not channels:
            raise TerraLiteError(f"ONNX file {self.path} has a dynamic band dimension and no TerraLite spec; pass --in-channels")
        return int(channels)

    def fingerprint(self) -> str:
        """The spec's hash, or for a file without a spec the first 12 hex digits of the file's SHA-256."""
        if self.spec:
            from terralite.models import spec_hash

            return spec_hash(self.spec)
        digest = hashlib.sha256()
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()[:12]


def initializer_params(graph) -> int:
    """Elements of the graph's initializers that are weights or biases: quantisation scales and zero points
    (inputs 1 and 2 of Quantize/DequantizeLinear) and int64 tensors (shapes, axes) are left out.

    The exporter folds BatchNorm into the preceding convolution, so this is usually a little below the
    PyTorch count of the same network.
    """
    import onnx

    qdq_constants = {name for node in graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear") for name in node.input[1:]}
    return sum(math.prod(init.dims) for init in graph.initializer
               if init.name not in qdq_constants and init.data_type != onnx.TensorProto.INT64)


def _dims(value_info) -> tuple:
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in value_info.type.tensor_type.shape.dim)


def read_onnx_file(path: str | Path) -> OnnxFile:
    """Read ``path``'s input, output, precision, parameter count and metadata (clear errors for other files)."""
    import onnx

    from terralite.onnx_metadata import read_onnx_metadata

    path = Path(path)
    if not path.is_file():
        raise TerraLiteError(f"ONNX file {path} does not exist; write one with terralite export or terralite quantize")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise TerraLiteError(f"{path} is not a readable ONNX model ({type(exc).__name__}); re-export it with terralite export") from None
    graph = proto.graph
    constants = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in constants]
    if len(inputs) != 1 or len(_dims(inputs[0])) != 4 or len(graph.output) < 1:
        raise TerraLiteError(f"ONNX file {path} must have one (B, C, H, W) input and a logits output; it has inputs "
                             f"{[i.name for i in inputs]} and outputs {[o.name for o in graph.output]}")
    if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise TerraLiteError(f"ONNX file {path} takes {onnx.TensorProto.DataType.Name(inputs[0].type.tensor_type.elem_type)} "
                             "input; the benchmark feeds float32 tiles")
    metadata = read_onnx_metadata({p.key: p.value for p in proto.metadata_props}, path)
    out_dims = _dims(graph.output[0])
    num_classes = (out_dims[1] if len(out_dims) == 4 else None) or (metadata.get("spec") or {}).get("num_classes")
    quantised = any(node.op_type in QUANTISED_OPS for node in graph.node)
    return OnnxFile(path, inputs[0].name, _dims(inputs[0]), graph.output[0].name, num_classes,
                    "int8" if quantised else "fp32", initializer_params(graph), metadata)


def session_source(info: OnnxFile, batch: int, in_channels: int, size: int) -> str | bytes:
    """What ONNX Runtime loads to run ``info`` at ``batch x in_channels x size x size``: the file itself when
    its input is fixed to that shape, else a copy (bytes) with the symbolic dimensions fixed, as a fixed-shape
    export would be (the runtime then plans for that one shape). A fixed dimension that differs is an error.
    """
    import onnx

    wanted = (batch, in_channels, size, size)
    for axis, have, want in zip(("batch", "bands", "height", "width"), info.input_dims, wanted):
        if have is not None and have != want:
            hint = {"batch": "export it with --dynamic-size, or use --tta hflip instead of hflip-batched / --batch-size 1",
                    "height": f"pass --size {have}", "width": f"pass --size {have}"}.get(axis, "")
            raise TerraLiteError(f"ONNX file {info.path} has a fixed input {axis} of {have}, but the measurement needs {want}"
                                 + (f"; {hint}" if hint else ""))
    if None not in info.input_dims:
        return str(info.path)
    proto = onnx.load(str(info.path))
    graph_input = next(i for i in proto.graph.input if i.name == info.input_name)
    for dim, value in zip(graph_input.type.tensor_type.shape.dim, wanted):
        dim.ClearField("dim_param")
        dim.dim_value = value
    return proto.SerializeToString()
