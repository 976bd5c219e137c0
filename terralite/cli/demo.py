"""``terralite demo [--out DIR] [--fast]``: the whole suite end to end on a synthetic dataset (``make demo``).

This module only parses the flags and calls :func:`terralite.demo.run_demo` (the demo, a script of
``terralite`` commands, is the top floor: it imports the CLI, so the CLI imports it only here, lazily).
"""

from __future__ import annotations

HELP = "run the main job end to end: data, searches, training, compression, export, benchmark, leaderboard, map"
DESCRIPTION = (
    "Generate a synthetic OpenEarthMap-layout dataset, run both architecture searches at a small budget, "
    "retrain the derived networks and a baseline, prune and distil one, quantise one, export them to ONNX, "
    "benchmark them all at 1024x1024 on this machine with and without TTA, render the leaderboard and map a "
    "held-out tile. Each step is one `terralite` command (printed as it runs); re-running with the same --out "
    "skips the steps whose artefacts exist. --fast uses tiny sizes (seconds; for tests)."
)


def add_arguments(parser) -> None:
    from terralite.cli.options import add_threads_option

    parser.add_argument("--out", default="demo_out", metavar="DIR", help="output folder (default demo_out)")
    parser.add_argument("--fast", action="store_true", help="tiny sizes: finishes in seconds (a smoke test, not a result)")
    parser.add_argument("--device", default="cpu", help="device for training and benchmarks: cpu (default), cuda or cuda:N")
    parser.add_argument("--only", metavar="STEP[,STEP]", default=None,
                        help="run only these steps (their inputs must exist); see --list")
    parser.add_argument("--list", action="store_true", help="list the steps and exit")
    add_threads_option(parser)


def run(args) -> int:
    from terralite.demo import list_steps, run_demo

    if args.list:
        print("\n".join(list_steps()))
        return 0
    run_demo(args.out, fast=args.fast, device=args.device,
             only=[s.strip() for s in args.only.split(",")] if args.only else None, threads=args.threads)
    return 0
