"""``terralite distill``: knowledge distillation (pixel-wise KL and/or channel-wise) from a frozen teacher."""

from __future__ import annotations

import argparse

from terralite.cli.options import add_config_options, printed_config

HELP = "train a student with distillation from a trained teacher (logits KL, channel-wise, or both)"
DESCRIPTION = (
    "Train STUDENT through the training engine with a distillation term from the frozen TEACHER (eval mode): "
    "pixel-wise KL on logits (--kd logits), channel-wise distillation (softmax over positions per channel) on "
    "logits or on --feature-layers (--kd cwd), or both. A 1x1 conv adapter maps student to teacher channels "
    "where they differ; it trains with the student and is not saved with it. --compare-alone also trains the "
    "same student without distillation (same config and seed; its training settings: --train-set). Writes "
    "RUN/distill.json and RUN/compression_rows.jsonl. Settings: --config YAML <- --set key=value <- explicit options."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Defaults live in DistillOptions: a flag left out (None) keeps the --config file's value.
    parser.add_argument("--teacher", default=None, metavar="CKPT", help="trained teacher checkpoint (.pt; required)")
    parser.add_argument("--student", default=None, metavar="MODEL",
                        help="baseline name, spec/arch JSON, or checkpoint to start from (required)")
    parser.add_argument("--data", default=None, metavar="ROOT", help="dataset root (required)")
    parser.add_argument("--out", default=None, metavar="RUN", help="run folder to create (required)")
    parser.add_argument("--kd", default=None, choices=["logits", "cwd", "both"], help="distillation term (default logits)")
    parser.add_argument("--tau", type=float, default=None, help="temperature (default 1 for logits KL, 4 for CWD)")
    parser.add_argument("--alpha", type=float, default=None, help="weight of the distillation term (default 1)")
    parser.add_argument("--feature-layers", nargs="+", default=None, metavar="S[:T]",
                        help="student layer names (and teacher layer names after ':', when they differ) to distil channel-wise instead of the logits")
    parser.add_argument("--half-teacher", action="store_true", default=None, help="run the teacher in fp16 (CUDA only)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the student's config/preset)")
    parser.add_argument("--train-set", dest="train_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="training-config override (repeatable), e.g. --train-set batch_size=4 --train-set seed=1 "
                             "(appended to the option overrides)")
    parser.add_argument("--compare-alone", action="store_true", default=None,
                        help="also train the student without distillation, same config and seed")
    parser.add_argument("--eval-split", default=None, metavar="SPLIT", help="split for the mIoU comparison; 'none' to skip (default val)")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--bench-size", type=int, default=None, metavar="PX", help="input side for the CPU latency rows (default 1024)")
    parser.add_argument("--bench-iters", type=int, default=None, metavar="N", help="timed iterations per latency row (default 10)")
    parser.add_argument("--resume", action="store_true", default=None, help="continue a killed distillation in --out (same options) from its last.pt")
    add_config_options(parser, example="--set kd=cwd")


def run(args: argparse.Namespace) -> int:
    from terralite.compress.distill_run import DistillOptions, distill
    from terralite.compress.training import resolve_options

    opts = resolve_options(DistillOptions, args.config, args.overrides, fields={
        "teacher": args.teacher, "student": args.student, "data": args.data, "out": args.out, "kd": args.kd,
        "tau": args.tau, "alpha": args.alpha, "feature_layers": args.feature_layers, "half_teacher": args.half_teacher,
        "epochs": args.epochs, "compare_alone": args.compare_alone, "eval_split": args.eval_split, "device": args.device,
        "bench_size": args.bench_size, "bench_iters": args.bench_iters, "resume": args.resume,
    }, train_overrides=args.train_overrides, train_field="overrides")
    if printed_config(args, opts):
        return 0
    out = distill(opts)
    print(f"distilled student: {out / 'distilled'}; summary: {out / 'distill.json'}; rows: {out / 'compression_rows.jsonl'}")
    return 0
