"""``terralite quantize``: int8 post-training static quantisation (ONNX Runtime, QDQ) calibrated on real tiles."""

from __future__ import annotations

import argparse

from terralite.cli.options import add_config_options, printed_config

HELP = "quantise a checkpoint or ONNX model to int8 (ONNX Runtime QDQ) and report agreement with fp32"
DESCRIPTION = (
    "Export the checkpoint to fp32 ONNX (beside --out, as NAME.fp32.onnx) unless an ONNX file is given, calibrate "
    "activation ranges on tiles of --calib normalised as the model was trained, write the int8 QDQ model, then "
    "compare it with fp32 on --eval-split (pixel agreement, mIoU of each). Writes OUT.json and "
    "compression_rows.jsonl beside --out. --tensorrt also builds a TensorRT int8 engine (needs tensorrt). "
    "Settings: --config YAML <- --set key=value <- explicit options."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Defaults live in QuantizeOptions: a flag left out (None) keeps the --config file's value.
    parser.add_argument("source", nargs="?", default=None, metavar="MODEL",
                        help="TerraLite checkpoint (.pt) or an ONNX file from terralite export")
    parser.add_argument("--calib", default=None, metavar="ROOT", help="dataset root whose tiles calibrate (and evaluate) the model (required)")
    parser.add_argument("--out", default=None, metavar="FILE", help="int8 ONNX file to write, e.g. MODEL.int8.onnx (required)")
    parser.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=None,
                        help="one weight scale per output channel (default; --no-per-channel: one per tensor)")
    parser.add_argument("--calib-images", type=int, default=None, metavar="N", help="calibration tiles, spread over the split (default 32)")
    parser.add_argument("--calib-split", default=None, metavar="SPLIT", help="split the calibration tiles come from (default train)")
    parser.add_argument("--eval-split", default=None, metavar="SPLIT", help="split for the fp32/int8 agreement; 'none' to skip (default val)")
    parser.add_argument("--eval-images", type=int, default=None, metavar="N", help="evaluate on N tiles spread over the split (default 0: all)")
    parser.add_argument("--tensorrt", default=None, metavar="FILE", help="also build a TensorRT int8 engine from the QDQ model at this path")
    parser.add_argument("--bench-size", type=int, default=None, metavar="PX", help="input side for the CPU latency rows (default 1024)")
    parser.add_argument("--bench-iters", type=int, default=None, metavar="N", help="timed iterations per latency row (default 10)")
    add_config_options(parser, example="--set calib_images=64")


def run(args: argparse.Namespace) -> int:
    from terralite.compress.quantization import QuantizeOptions, quantize_model
    from terralite.config import resolve_config

    opts = resolve_config(QuantizeOptions, args.config, args.overrides, fields={
        "source": args.source, "calib": args.calib, "out": args.out, "per_channel": args.per_channel,
        "calib_images": args.calib_images, "calib_split": args.calib_split, "eval_split": args.eval_split,
        "eval_images": args.eval_images, "tensorrt": args.tensorrt, "bench_size": args.bench_size,
        "bench_iters": args.bench_iters,
    })
    if printed_config(args, opts):
        return 0
    report = quantize_model(opts)
    line = f"int8 model: {report['int8_onnx']} ({report['int8_bytes'] / 1e6:.1f} MB, fp32 {report['fp32_bytes'] / 1e6:.1f} MB)"
    if "agreement" in report:
        a = report["agreement"]
        line += (f"; on {a['images']} {a['split']} tiles: pixel agreement {100 * a['pixel_agreement']:.2f} %, "
                 f"mIoU fp32 {a['miou_fp32']:.4f} / int8 {a['miou_int8']:.4f} ({a['miou_difference']:+.4f})")
    print(line)
    from terralite.compress.quantization import speed_line

    print(speed_line(report["speed"]))
    return 0
