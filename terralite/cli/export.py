"""``terralite export CKPT --format onnx|tensorrt --out FILE``: a deployable, verified, self-describing model file."""

from __future__ import annotations

HELP = "export a checkpoint to ONNX (verified against PyTorch, with metadata) or a TensorRT engine"
DESCRIPTION = (
    "Export CKPT (a TerraLite checkpoint, spec JSON or baseline name) to a single simplified ONNX file with "
    "static or dynamic height/width, verified against PyTorch on random input and on a real tile (the "
    "checkpoint's training data, or --verify-data); the maximum absolute difference of the logits is printed "
    "and an export above --tolerance fails and leaves no file. The ONNX file carries the model spec, the input "
    "normalisation and the class names, so `terralite predict` runs from it alone. --format tensorrt builds a "
    "TensorRT engine where TensorRT is importable."
)

# Spelled out here (not imported) so that building the parser imports no torch; a test keeps them equal
# to terralite.benchmark.export_verify's.
_TOLERANCE_FP32, _TOLERANCE_FP16 = 1e-3, 5e-2


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="TerraLite checkpoint (.pt), spec JSON or baseline name")
    parser.add_argument("--format", default="onnx", choices=["onnx", "tensorrt"], help="output format (default onnx)")
    parser.add_argument("--out", required=True, metavar="FILE", help="output file (.onnx or .engine)")
    parser.add_argument("--opset", type=int, default=None, metavar="N", help="ONNX opset (default: the exporter's, 18)")
    parser.add_argument("--size", type=int, default=1024, metavar="PX",
                        help="input height and width for export and verification, a multiple of 32 (default 1024)")
    parser.add_argument("--dynamic-size", action="store_true", help="dynamic batch, height and width (any multiple of 32)")
    parser.add_argument("--fp16", action="store_true", help="TensorRT: build an fp16 engine")
    parser.add_argument("--tolerance", type=float, default=None, metavar="X",
                        help=f"max abs logit difference allowed (default {_TOLERANCE_FP32:g}, {_TOLERANCE_FP16:g} with --fp16)")
    parser.add_argument("--verify-data", metavar="ROOT", default=None,
                        help="dataset root or GeoTIFF to take the real verification tile from (default: the checkpoint's training data)")


def run(args) -> int:
    from terralite.benchmark.export_verify import export_model

    report = export_model(
        args.checkpoint, args.out, fmt=args.format, size=args.size, dynamic=args.dynamic_size, opset=args.opset,
        fp16=args.fp16, tolerance=args.tolerance, verify_data=args.verify_data,
    )
    for line in report["lines"]:
        print(line)
    return 0
