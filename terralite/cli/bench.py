"""terralite bench: latency/FPS (and optionally mIoU) rows of models under stated conditions, as JSONL."""

from __future__ import annotations

import argparse

from terralite.cli import TTA_MODE_NAMES

HELP = "time models on a runtime/device with and without TTA; write one JSON row per measurement"
DESCRIPTION = (
    "Profile each MODEL (baseline name, spec/arch JSON or checkpoint), time it on --runtime/--device at "
    "1 x C x SIZE x SIZE for each --tta mode (flips and merge inside the timed call) and append one flat "
    "JSON row per measurement to --out. Paper protocol: --runtime torch --precision fp32 --warmup 10 --iters 300 "
    "on a GPU. With --data and a checkpoint, mIoU is evaluated with the same TTA. A MODEL.onnx file (e.g. the "
    "int8 graph of terralite quantize) is timed as it stands with --runtime onnxruntime, in its own precision; "
    "its parameters and GMACs come from the TerraLite spec it carries, else parameters from its weights and no GMACs."
)
TTA_HELP = (
    f"comma-separated TTA modes to time: {', '.join(TTA_MODE_NAMES)} (as in eval and predict: one network call "
    "per view, logits summed), or hflip-batched (the logits of hflip from ONE call on a batch of both views; "
    "its mIoU is hflip's). Default none"
)


def add_arguments(parser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL", help="baseline name, spec/arch JSON, checkpoint or .onnx file")
    parser.add_argument("--size", type=int, default=1024, metavar="PX", help="input height and width, a multiple of 32 (default 1024)")
    parser.add_argument("--in-channels", type=int, default=None, metavar="N", help="input bands (default: the spec's, else 3)")
    parser.add_argument("--runtime", default="torch", help="torch (default), onnxruntime or tensorrt")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--precision", default=None, choices=["fp32", "fp16", "bf16", "int8"],
                        help="default fp32; for an ONNX file, the file's (int8 for a quantised graph)")
    parser.add_argument("--tta", default="none", metavar="MODE[,MODE]", help=TTA_HELP)
    parser.add_argument("--batch-size", type=int, default=1, metavar="N", help="images per call (default 1)")
    parser.add_argument("--batch", dest="batch_size", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # old spelling
    parser.add_argument("--warmup", type=int, default=10, metavar="N", help="untimed calls first (default 10)")
    parser.add_argument("--iters", type=int, default=300, metavar="N", help="timed calls (default 300)")
    parser.add_argument("--channels-last", action="store_true", help="torch: NHWC memory format")
    parser.add_argument("--compile", action="store_true", help="torch: torch.compile the network")
    parser.add_argument("--cuda-graphs", action="store_true", help="torch on cuda: capture the call in a CUDA graph")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for torch and onnxruntime (default: library choice)")
    parser.add_argument("--data", default=None, metavar="ROOT", help="dataset root: evaluate mIoU of checkpoints on --split")
    parser.add_argument("--split", default="test", metavar="SPLIT", help="split for --data (default test)")
    parser.add_argument("--out", required=True, metavar="FILE|DIR",
                        help="JSONL file to append to, or an existing folder (or a path ending in /): the file in it is named after the conditions")


def run(args) -> int:
    import sys

    from terralite.benchmark.bench_run import bench_models

    def report(ref: str, rows: list[dict], target) -> None:
        for row in rows:
            miou = "" if row["miou"] is None else f"  mIoU {row['miou']:.4f}"
            print(f"{row['model']:<28} tta={row['tta']:<13} {row['latency_ms_mean']:9.2f} ms  {row['fps']:8.2f} FPS{miou}")
        print(f"rows appended to {target}", file=sys.stderr)
        if rows[0]["gmacs"] is None:
            print(f"note: {ref} carries no TerraLite spec: parameters are counted from its weights, GMACs left empty", file=sys.stderr)

    bench_models(args.models, args.out, size=args.size, in_channels=args.in_channels, runtime=args.runtime,
                 device=args.device, precision=args.precision, tta=[m.strip() for m in args.tta.split(",") if m.strip()],
                 batch_size=args.batch_size, warmup=args.warmup, iters=args.iters, channels_last=args.channels_last,
                 torch_compile=args.compile, cuda_graphs=args.cuda_graphs, threads=args.threads, data=args.data,
                 split=args.split, on_rows=report)
    return 0
