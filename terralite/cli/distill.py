"""``terralite distill``: knowledge distillation (pixel-wise KL and/or channel-wise) from a frozen teacher."""

from __future__ import annotations

import argparse

HELP = "train a student with distillation from a trained teacher (logits KL, channel-wise, or both)"
DESCRIPTION = (
    "Train STUDENT through the training engine with a distillation term from the frozen TEACHER (eval mode): "
    "pixel-wise KL on logits (--kd logits), channel-wise distillation (softmax over positions per channel) on "
    "logits or on --feature-layers (--kd cwd), or both. A 1x1 conv adapter maps student to teacher channels "
    "where they differ; it trains with the student and is not saved with it. --compare-alone also trains the "
    "same student without distillation (same config and seed). Writes RUN/distill.json and RUN/compression_rows.jsonl."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", required=True, metavar="CKPT", help="trained teacher checkpoint (.pt)")
    parser.add_argument("--student", required=True, metavar="SPEC|CKPT", help="baseline name, spec/arch JSON, or checkpoint to start from")
    parser.add_argument("--data", required=True, metavar="ROOT", help="dataset root")
    parser.add_argument("--out", required=True, metavar="RUN", help="run folder to create")
    parser.add_argument("--kd", default="logits", choices=["logits", "cwd", "both"], help="distillation term (default logits)")
    parser.add_argument("--tau", type=float, default=None, help="temperature (default 1 for logits KL, 4 for CWD)")
    parser.add_argument("--alpha", type=float, default=1.0, help="weight of the distillation term (default 1)")
    parser.add_argument("--feature-layers", nargs="+", default=[], metavar="S[:T]",
                        help="student layer names (and teacher layer names after ':', when they differ) to distil channel-wise instead of the logits")
    parser.add_argument("--half-teacher", action="store_true", help="run the teacher in fp16 (CUDA only)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the student's config/preset)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="training-config override (repeatable), e.g. --set batch_size=4 --set seed=1")
    parser.add_argument("--compare-alone", action="store_true", help="also train the student without distillation, same config and seed")
    parser.add_argument("--eval-split", default="val", help="split for the mIoU comparison; 'none' to skip (default val)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--bench-size", type=int, default=1024, help="input side for the CPU latency rows (default 1024)")
    parser.add_argument("--bench-iters", type=int, default=10, help="timed iterations per latency row (default 10)")


def run(args: argparse.Namespace) -> int:
    from terralite.compress.distill_run import DistillOptions, distill

    out = distill(DistillOptions(
        teacher=args.teacher, student=args.student, data=args.data, out=args.out, kd=args.kd, tau=args.tau,
        alpha=args.alpha, feature_layers=args.feature_layers, half_teacher=args.half_teacher, epochs=args.epochs,
        overrides=args.overrides, compare_alone=args.compare_alone,
        eval_split=None if args.eval_split.lower() == "none" else args.eval_split, device=args.device,
        bench_size=args.bench_size, bench_iters=args.bench_iters,
    ))
    print(f"distilled student: {out / 'distilled'}; summary: {out / 'distill.json'}; rows: {out / 'compression_rows.jsonl'}")
    return 0
