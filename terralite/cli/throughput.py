"""``terralite throughput``: training images/s and the share of step time spent waiting for data."""

from __future__ import annotations

import argparse

HELP = "measure training throughput (images/s) and the share of step time waiting for data"
DESCRIPTION = (
    "Train MODEL on random crops of the dataset for --warmup + --steps steps with the engine's data loader and "
    "report images/s and the fraction of each step spent waiting for the batch (GeoTIFF reading, decoding, cropping)."
)


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, metavar="MODEL", help="baseline name, spec JSON or checkpoint")
    parser.add_argument("--data", required=True, metavar="ROOT", help="dataset root (OpenEarthMap layout) or a data YAML file (DataConfig fields, any dataset kind)")
    parser.add_argument("--split", default="train", metavar="SPLIT", help="split whose tiles are read (default train)")
    parser.add_argument("--crop", type=int, default=512, metavar="PX", help="random crop size (default 512; 0 = whole tiles)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per training step (default 8)")
    parser.add_argument("--batch", dest="batch_size", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # old spelling
    parser.add_argument("--steps", type=int, default=50, metavar="N", help="timed steps (default 50)")
    parser.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed steps first (default 5)")
    parser.add_argument("--workers", type=int, metavar="N", help="data-loader workers (default: 0 on CPU, up to 8 on a GPU)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--amp", default="auto", choices=["auto", "fp16", "bf16", "none"], help="mixed precision (default auto)")
    parser.add_argument("--out", metavar="FILE", help="write the result as JSON to FILE")


def run(args) -> int:
    from terralite.engine.throughput import measure_throughput

    result = measure_throughput(args.model, args.data, args.crop, args.batch_size, args.steps, args.warmup, args.workers,
                                args.device, args.amp, split=args.split, out=args.out)
    print(f"{result['model']}: {result['images_per_s']:.2f} images/s, {100 * result['data_wait_share']:.1f} % of step time "
          f"waiting for data ({result['step_ms_mean']:.1f} ms/step, batch {result['batch']}, crop {result['crop']}, "
          f"{result['workers']} workers, {result['device']}, amp {result['amp']})")
    return 0
