"""terralite bench: latency/FPS (and optionally mIoU) rows of models under stated conditions, as JSONL."""

from __future__ import annotations

HELP = "time models on a runtime/device with and without TTA; write one JSON row per measurement"
DESCRIPTION = (
    "Profile each MODEL (baseline name, spec/arch JSON or checkpoint), time it on --runtime/--device at "
    "1 x C x SIZE x SIZE for each --tta mode (flips and merge inside the timed call) and append one flat "
    "JSON row per measurement to --out. Paper protocol: --runtime torch --precision fp32 --warmup 10 --iters 300 "
    "on a GPU. With --data and a checkpoint, mIoU is evaluated with the same TTA. A MODEL.onnx file (e.g. the "
    "int8 graph of terralite quantize) is timed as it stands with --runtime onnxruntime, in its own precision; "
    "its parameters and GMACs come from the TerraLite spec it carries, else parameters from its weights and no GMACs."
)


def add_arguments(parser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL", help="baseline name, spec/arch JSON, checkpoint or .onnx file")
    parser.add_argument("--size", type=int, default=1024, help="input height and width (default 1024)")
    parser.add_argument("--in-channels", type=int, default=None, help="input bands (default: the spec's, else 3)")
    parser.add_argument("--runtime", default="torch", help="torch, onnxruntime or tensorrt (default torch)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--precision", default=None, choices=["fp32", "fp16", "bf16", "int8"],
                        help="default fp32; for an ONNX file, the file's (int8 for a quantised graph)")
    parser.add_argument("--tta", default="none", help="comma-separated TTA modes: none, hflip, hflip-batched (default none)")
    parser.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls first (default 10)")
    parser.add_argument("--iters", type=int, default=300, help="timed calls (default 300)")
    parser.add_argument("--channels-last", action="store_true", help="torch: NHWC memory format")
    parser.add_argument("--compile", action="store_true", help="torch: torch.compile the network")
    parser.add_argument("--cuda-graphs", action="store_true", help="torch on cuda: capture the call in a CUDA graph")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch and onnxruntime (default: library choice)")
    parser.add_argument("--data", default=None, help="OpenEarthMap root: evaluate mIoU of checkpoints on --split")
    parser.add_argument("--split", default="test", help="split for --data (default test)")
    parser.add_argument("--out", required=True, help="JSONL file to append to, or a folder (file named after the conditions)")


def run(args) -> int:
    import os
    import sys
    from pathlib import Path

    from terralite.benchmark.bench import benchmark_rows
    from terralite.benchmark.rows import conditions_file_name, write_rows
    from terralite.atomic import ensure_parent
    from terralite.errors import TerraLiteError

    out = Path(args.out)
    if args.out.endswith(("/", os.sep)) and not out.is_dir():
        ensure_parent(out).mkdir()  # a trailing slash names a folder; its parent must exist
    ensure_parent(out)  # fail before minutes of timing, not after
    options = {}
    if args.runtime == "torch":
        options = {"channels_last": args.channels_last, "compile": args.compile, "cuda_graphs": args.cuda_graphs}
    elif args.channels_last or args.compile or args.cuda_graphs:
        raise TerraLiteError(f"--channels-last, --compile and --cuda-graphs are torch options; drop them for --runtime {args.runtime}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        if args.runtime == "onnxruntime":
            options["threads"] = args.threads
    tta = [mode.strip() for mode in args.tta.split(",") if mode.strip()]
    for ref in args.models:
        rows = benchmark_rows(ref, size=args.size, in_channels=args.in_channels, data=args.data, split=args.split,
                              runtime=args.runtime, device=args.device, precision=args.precision, tta=tta,
                              warmup=args.warmup, iters=args.iters, batch=args.batch, runner_options=options)
        # in a folder, the file is named after the conditions (an ONNX file's precision is known from its rows)
        target = out / conditions_file_name(args.device, args.runtime, rows[0]["precision"], args.size, args.batch) if out.is_dir() else out
        write_rows(target, rows)
        for row in rows:
            miou = "" if row["miou"] is None else f"  mIoU {row['miou']:.4f}"
            print(f"{row['model']:<28} tta={row['tta']:<13} {row['latency_ms_mean']:9.2f} ms  {row['fps']:8.2f} FPS{miou}")
        print(f"rows appended to {target}", file=sys.stderr)
        if rows[0]["gmacs"] is None:
            print(f"note: {ref} carries no TerraLite spec: parameters are counted from its weights, GMACs left empty", file=sys.stderr)
    return 0
