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
    from terralite.cli.options import add_config_options

    parser.add_argument("--data", metavar="ROOT", help="dataset root (OpenEarthMap layout) or a data YAML (kind: large-raster, ...)")
    parser.add_argument("--out", metavar="RUN", help="run folder to create (or to continue with --resume)")
    parser.add_argument("--preset", help="oem (the OEM authors' space and schedule, default), oem-cpu (that space, a schedule for a CPU) "
                                         "or tiny (minutes on a CPU)")
    add_config_options(parser, "--set target.size=512 --set space.layers=12")
    parser.add_argument("--target-fps", type=float, help="target FPS of the student (default 8)")
    parser.add_argument("--lut", metavar="FILE", help="latency table measured for the target (device, runtime, size); "
                                                     "default: measure one into RUN/lut.json")
    parser.add_argument("--epochs", type=int, help="search epochs after the warm-up")
    parser.add_argument("--warmup-epochs", type=int, help="weight-only warm-up epochs")
    parser.add_argument("--crop", type=int, help="random crop size (divisible by 32)")
    parser.add_argument("--batch-size", type=int, help="global batch size (split across torchrun processes; at least 2 each)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (under torchrun each rank takes its LOCAL_RANK)")
    parser.add_argument("--amp", choices=["auto", "fp16", "bf16", "none"], help="mixed precision (default auto: bf16/fp16 on GPU)")
    parser.add_argument("--workers", type=int, help="data-loader workers per process")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.add_argument("--resume", action="store_true", help="continue the search in --out from its last finished epoch")


def run(args) -> int:
    from terralite.cli.options import data_fields, printed_config
    from terralite.nas.fasterseg.config import resolve_search_config
    from terralite.nas.fasterseg.search import search

    cfg = resolve_search_config(
        args.preset, args.config, args.overrides,
        **{**data_fields(args.data), "out": args.out, "target.fps": args.target_fps, "lut": args.lut, "epochs": args.epochs,
           "warmup_epochs": args.warmup_epochs, "crop": args.crop, "batch_size": args.batch_size, "device": args.device,
           "amp": args.amp, "workers": args.workers, "seed": args.seed, "resume": True if args.resume else None},
    )
    if printed_config(args, cfg):
        return 0
    run_dir = search(cfg)
    print(f"{run_dir / 'student.json'}\n{run_dir / 'teacher.json'}")
    return 0
