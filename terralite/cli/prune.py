"""``terralite prune``: structured channel pruning of a trained checkpoint, with fine-tuning and before/after rows."""

from __future__ import annotations

import argparse

from terralite.cli.options import add_config_options, printed_config

HELP = "prune channels of a trained checkpoint (torch-pruning), fine-tune it and compare before/after"
DESCRIPTION = (
    "Remove a share of the channels of every prunable layer (or of the whole network with --global), "
    "physically shrinking the network; classifier heads keep their outputs. The pruning history is stored in "
    "the checkpoint's spec, so RUN/pruned.pt loads anywhere (terralite eval/export/train). With "
    "--finetune-epochs the network is fine-tuned through the training engine after every pruning step "
    "(its training settings: --train-set). Writes RUN/prune.json and RUN/compression_rows.jsonl (parent vs "
    "pruned: params, GMACs, CPU latency, mIoU). Settings: --config YAML <- --set key=value <- explicit options."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Defaults live in PruneOptions: a flag left out (None) keeps the --config file's value.
    parser.add_argument("checkpoint", nargs="?", default=None, metavar="CKPT", help="trained TerraLite checkpoint (.pt)")
    parser.add_argument("--ratio", type=float, default=None, metavar="R", help="share of channels to remove, strictly between 0 and 1 (required)")
    parser.add_argument("--importance", default=None, choices=["l1", "l2", "taylor", "bn-scale"],
                        help="channel ranking: weight L1/L2 norm, first-order Taylor (gradients on training tiles) or BN scale (default l1)")
    parser.add_argument("--global", dest="global_pruning", action="store_true", default=None,
                        help="rank channels across the whole network instead of removing --ratio of every layer")
    parser.add_argument("--round-to", type=int, default=None, metavar="N", help="keep channel counts multiples of N (e.g. 8)")
    parser.add_argument("--iterative", type=int, default=None, metavar="K", help="reach --ratio in K equal steps (default 1)")
    parser.add_argument("--finetune-epochs", type=int, default=None, metavar="E", help="epochs of fine-tuning after each step (default 0)")
    parser.add_argument("--train-set", dest="train_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="training-config override for the fine-tunes (repeatable), e.g. --train-set batch_size=4 "
                             "--train-set optim.lr=1e-4 (appended to the option finetune_overrides)")
    parser.add_argument("--data", default=None, metavar="ROOT", help="dataset root (evaluation, Taylor gradients, fine-tuning; required)")
    parser.add_argument("--eval-split", default=None, metavar="SPLIT", help="split for before/after mIoU; 'none' to skip (default val)")
    parser.add_argument("--out", default=None, metavar="RUN", help="run folder to create (required)")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--bench-size", type=int, default=None, metavar="PX", help="input side for the CPU latency rows (default 1024)")
    parser.add_argument("--bench-iters", type=int, default=None, metavar="N", help="timed iterations per latency row (default 10)")
    parser.add_argument("--resume", action="store_true", default=None, help="continue a killed prune in --out (same options): each fine-tune resumes from its last.pt")
    add_config_options(parser, example="--set taylor_tiles=8")


def run(args: argparse.Namespace) -> int:
    from terralite.compress.prune_run import PruneOptions, prune_checkpoint
    from terralite.compress.training import resolve_options

    opts = resolve_options(PruneOptions, args.config, args.overrides, fields={
        "checkpoint": args.checkpoint, "data": args.data, "out": args.out, "ratio": args.ratio,
        "importance": args.importance, "global_pruning": args.global_pruning, "round_to": args.round_to,
        "iterative": args.iterative, "finetune_epochs": args.finetune_epochs, "eval_split": args.eval_split,
        "device": args.device, "bench_size": args.bench_size, "bench_iters": args.bench_iters, "resume": args.resume,
    }, train_overrides=args.train_overrides, train_field="finetune_overrides")
    if printed_config(args, opts):
        return 0
    out = prune_checkpoint(opts)
    print(f"pruned model: {out / 'pruned.pt'}; summary: {out / 'prune.json'}; rows: {out / 'compression_rows.jsonl'}")
    return 0
