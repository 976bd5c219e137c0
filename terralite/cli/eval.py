"""``terralite eval``: mIoU, per-class IoU/F1 and pixel accuracy of a checkpoint on a dataset split."""

from __future__ import annotations

import argparse

from terralite.cli import TTA_HELP, TTA_MODE_NAMES

HELP = "evaluate a checkpoint on a dataset split (mIoU, per-class IoU, F1; optional TTA)"
DESCRIPTION = (
    "Accumulate one confusion matrix over every tile of the split (ignored pixels excluded) and report "
    "per-class IoU, mIoU, F1 and pixel accuracy. --tta hflip is the OpenEarthMap protocol (identity + "
    "horizontal flip, logits summed). Tiles larger than --window are evaluated in overlapping windows."
)


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="TerraLite checkpoint (.pt)")
    parser.add_argument("--data", required=True, metavar="ROOT", help="dataset root (OpenEarthMap layout) or a data YAML file (DataConfig fields, any dataset kind)")
    parser.add_argument("--split", default="test", metavar="SPLIT", help="split list to evaluate (default: test)")
    parser.add_argument("--tta", default="none", choices=TTA_MODE_NAMES, help=f"test-time augmentation: {TTA_HELP} (default none)")
    parser.add_argument("--out", metavar="FILE", default=None, help="write the metrics as JSON to FILE (e.g. metrics.json)")
    parser.add_argument("--json", dest="out", metavar="FILE", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # old spelling
    parser.add_argument("--save-predictions", metavar="DIR", help="write one PNG of predicted class ids (0..7) per tile into DIR")
    parser.add_argument("--window", type=int, default=1024, metavar="PX", help="largest side evaluated whole (default 1024)")
    parser.add_argument("--overlap", type=float, default=0.25, help="overlap of sliding windows, a fraction of --window (default 0.25)")
    parser.add_argument("--batch-size", type=int, default=1, metavar="N", help="tiles per forward pass (default 1)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--amp", default="none", choices=["auto", "fp16", "bf16", "none"], help="mixed precision (default none)")
    parser.add_argument("--skip-missing", action="store_true", help="skip listed tiles whose files are missing")


def run(args) -> int:
    import os

    from terralite.engine.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(
        args.checkpoint, args.data, args.split, args.tta, args.device, args.out, args.save_predictions,
        args.window, args.overlap, args.batch_size, args.amp, args.skip_missing,
    )
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    width = max(len(name) for name in result["classes"])
    for name, iou, f1 in zip(result["classes"], result["iou"], result["f1"]):
        print(f"{name:<{width}}  IoU {_pct(iou)}  F1 {_pct(f1)}")
    print(f"mIoU {_pct(result['miou'])}  mF1 {_pct(result['mf1'])}  pixel accuracy {_pct(result['pixel_accuracy'])}  "
          f"({result['tiles']} tiles, {result['split']} split, TTA {result['tta']})")
    return 0


def _pct(value) -> str:
    return "   n/a" if value is None or value != value else f"{100 * value:6.2f}"
