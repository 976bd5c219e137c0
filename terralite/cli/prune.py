"""``terralite prune``: structured channel pruning of a trained checkpoint, with fine-tuning and before/after rows."""

from __future__ import annotations

import argparse

HELP = "prune channels of a trained checkpoint (torch-pruning), fine-tune it and compare before/after"
DESCRIPTION = (
    "Remove a share of the channels of every prunable layer (or of the whole network with --global), "
    "physically shrinking the network; classifier heads keep their outputs. The pruning history is stored in "
    "the checkpoint's spec, so RUN/pruned.pt loads anywhere (terralite eval/export/train). With "
    "--finetune-epochs the network is fine-tuned through the training engine after every pruning step. "
    "Writes RUN/prune.json and RUN/compression_rows.jsonl (parent vs pruned: params, GMACs, CPU latency, mIoU)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="trained TerraLite checkpoint (.pt)")
    parser.add_argument("--ratio", type=float, required=True, help="share of channels to remove, strictly between 0 and 1")
    parser.add_argument("--importance", default="l1", choices=["l1", "l2", "taylor", "bn-scale"],
                        help="channel ranking: weight L1/L2 norm, first-order Taylor (gradients on training tiles) or BN scale (default l1)")
    parser.add_argument("--global", dest="global_pruning", action="store_true",
                        help="rank channels across the whole network instead of removing --ratio of every layer")
    parser.add_argument("--round-to", type=int, default=None, metavar="N", help="keep channel counts multiples of N (e.g. 8)")
    parser.add_argument("--iterative", type=int, default=1, metavar="K", help="reach --ratio in K equal steps (default 1)")
    parser.add_argument("--finetune-epochs", type=int, default=0, metavar="E", help="epochs of fine-tuning after each step (default 0)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="training-config override for the fine-tunes (repeatable), e.g. --set batch_size=4 --set optim.lr=1e-4")
    parser.add_argument("--data", required=True, metavar="ROOT", help="dataset root (evaluation, Taylor gradients, fine-tuning)")
    parser.add_argument("--eval-split", default="val", help="split for before/after mIoU; 'none' to skip (default val)")
    parser.add_argument("--out", required=True, metavar="RUN", help="run folder to create")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--bench-size", type=int, default=1024, help="input side for the CPU latency rows (default 1024)")
    parser.add_argument("--bench-iters", type=int, default=10, help="timed iterations per latency row (default 10)")


def run(args: argparse.Namespace) -> int:
    from terralite.compress.prune_run import PruneOptions, prune_checkpoint

    out = prune_checkpoint(PruneOptions(
        checkpoint=args.checkpoint, data=args.data, out=args.out, ratio=args.ratio, importance=args.importance,
        global_pruning=args.global_pruning, round_to=args.round_to, iterative=args.iterative,
        finetune_epochs=args.finetune_epochs, finetune_overrides=args.overrides,
        eval_split=None if args.eval_split.lower() == "none" else args.eval_split, device=args.device,
        bench_size=args.bench_size, bench_iters=args.bench_iters,
    ))
    print(f"pruned model: {out / 'pruned.pt'}; summary: {out / 'prune.json'}; rows: {out / 'compression_rows.jsonl'}")
    return 0
