"""``terralite quantize``: int8 post-training static quantisation (ONNX Runtime, QDQ) calibrated on real tiles."""

from __future__ import annotations

import argparse

HELP = "quantise a checkpoint or ONNX model to int8 (ONNX Runtime QDQ) and report agreement with fp32"
DESCRIPTION = (
    "Export the checkpoint to fp32 ONNX (beside --out, as NAME.fp32.onnx) unless an ONNX file is given, calibrate "
    "activation ranges on tiles of --calib normalised as the model was trained, write the int8 QDQ model, then "
    "compare it with fp32 on --eval-split (pixel agreement, mIoU of each). Writes OUT.json and "
    "compression_rows.jsonl beside --out. --tensorrt also builds a TensorRT int8 engine (needs tensorrt)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="CKPT|ONNX", help="TerraLite checkpoint (.pt) or an ONNX file from terralite export")
    parser.add_argument("--calib", required=True, metavar="ROOT", help="dataset root whose tiles calibrate (and evaluate) the model")
    parser.add_argument("--out", required=True, metavar="MODEL.int8.onnx", help="int8 ONNX file to write")
    parser.add_argument("--per-channel", action="store_true", help="per-output-channel weight scales (more accurate, a little slower)")
    parser.add_argument("--calib-images", type=int, default=32, metavar="N", help="calibration tiles, spread over the split (default 32)")
    parser.add_argument("--calib-split", default="train", help="split the calibration tiles come from (default train)")
    parser.add_argument("--eval-split", default="val", help="split for the fp32/int8 agreement; 'none' to skip (default val)")
    parser.add_argument("--eval-images", type=int, default=0, metavar="N", help="evaluate on N tiles spread over the split (default: all)")
    parser.add_argument("--tensorrt", default=None, metavar="ENGINE", help="also build a TensorRT int8 engine from the QDQ model at this path")
    parser.add_argument("--bench-size", type=int, default=1024, help="input side for the CPU latency rows (default 1024)")
    parser.add_argument("--bench-iters", type=int, default=10, help="timed iterations per latency row (default 10)")


def run(args: argparse.Namespace) -> int:
    from terralite.compress.quantization import QuantizeOptions, quantize_model

    report = quantize_model(QuantizeOptions(
        source=args.source, calib=args.calib, out=args.out, per_channel=args.per_channel, calib_images=args.calib_images,
        calib_split=args.calib_split, eval_split=None if args.eval_split.lower() == "none" else args.eval_split,
        eval_images=args.eval_images, tensorrt=args.tensorrt, bench_size=args.bench_size, bench_iters=args.bench_iters,
    ))
    line = f"int8 model: {report['int8_onnx']} ({report['int8_bytes'] / 1e6:.1f} MB, fp32 {report['fp32_bytes'] / 1e6:.1f} MB)"
    if "agreement" in report:
        a = report["agreement"]
        line += (f"; on {a['images']} {a['split']} tiles: pixel agreement {100 * a['pixel_agreement']:.2f} %, "
                 f"mIoU fp32 {a['miou_fp32']:.4f} / int8 {a['miou_int8']:.4f} ({a['miou_difference']:+.4f})")
    print(line)
    return 0
