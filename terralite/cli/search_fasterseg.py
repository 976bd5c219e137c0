"""``terralite search fasterseg``: latency-aware FasterSeg teacher–student search."""

from __future__ import annotations

HELP = "FasterSeg search: multi-resolution cells, widths and paths under a target FPS"
DESCRIPTION = (
    "Warm-up with the sandwich rule, then first-order bilevel teacher-student search on two halves of the "
    "training split, with the latency of the student read from a latency table (--lut, or measured for the "
    "target when absent). Writes RUN/teacher.json and RUN/student.json (model specs for `terralite train "
    "--model`), per-epoch snapshots in RUN/arch/, log.csv, run.log, the table used and arch_evolution.png."
)


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="dataset root (OpenEarthMap layout)")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--preset", default="oem", help="oem (the OEM authors' space and schedule), oem-cpu (that space, a schedule for a CPU) or tiny (minutes on a CPU)")
    parser.add_argument("--config", help="YAML config (keys of FasterSegSearchConfig)")
    parser.add_argument("--target-fps", type=float, help="target FPS of the student (default 8)")
    parser.add_argument("--lut", help="latency table measured for the target (device, runtime, size)")
    parser.add_argument("--epochs", type=int, help="search epochs after the warm-up")
    parser.add_argument("--warmup-epochs", type=int, help="weight-only warm-up epochs")
    parser.add_argument("--crop", type=int, help="random crop size (divisible by 32)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (under torchrun each rank takes its LOCAL_RANK)")
    parser.add_argument("--resume", action="store_true", help="continue the search in --out from its last finished epoch")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set target.size=512 --set space.layers=12 (repeatable)")


def run(args) -> int:
    from terralite.nas.fasterseg.config import SEARCH_PRESETS, FasterSegSearchConfig
    from terralite.nas.fasterseg.search import search_fasterseg
    from terralite.config import resolve_config
    from terralite.errors import TerraLiteError

    if args.preset not in SEARCH_PRESETS:
        raise TerraLiteError(f"unknown search preset {args.preset!r}; valid presets: {', '.join(SEARCH_PRESETS)}")
    flags = {"data": args.data, "out": args.out, "target.fps": args.target_fps, "lut": args.lut, "epochs": args.epochs,
             "warmup_epochs": args.warmup_epochs, "crop": args.crop, "batch_size": args.batch_size, "device": args.device}
    overrides = [f"{k}={v}" for k, v in flags.items() if v is not None] + list(args.overrides)
    cfg = resolve_config(FasterSegSearchConfig, args.config, overrides, base=SEARCH_PRESETS[args.preset])
    run_dir = search_fasterseg(cfg, resume=args.resume)
    print(f"{run_dir / 'student.json'}\n{run_dir / 'teacher.json'}")
    return 0
