"""Options shared by ``terralite search random`` and ``terralite search nni`` (multi-trial searches)."""

from __future__ import annotations

MULTI_TRIAL_NOTES = (
    "A trial prices an architecture's latency (FasterSeg: the --lut table; SparseMask: measured, it has no table), "
    "rejects it before training outside --band around the target (--target-fps, or the latency of --match ARCH.json) "
    "and, with --measured-band, outside that band by its latency timed side by side with the --match network, "
    "else trains it with one recipe and proxy budget (--train-preset, --epochs, --steps-per-epoch, --set ...), "
    "evaluates its final weights on --eval-split and scores it by --objective. Writes RUN/trials.csv, trials.md, "
    "trials.png, best.json, summary.json and RUN/trials/<trial>/ (arch.json, train/, result.json). Rerunning the "
    "same command resumes: finished trials are skipped."
)


def add_multi_trial_arguments(parser) -> None:
    parser.add_argument("--space", required=True, choices=["fasterseg", "sparsemask"], help="search space")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-fps", type=float, metavar="F", help="target latency as frames per second (1000/F ms)")
    target.add_argument("--match", metavar="ARCH.json", help="target = the latency of this architecture or spec JSON "
                                                             "(e.g. a searched student's RUN/student.json)")
    parser.add_argument("--band", type=float, default=0.05, help="keep architectures within ±band of the target latency (default 0.05)")
    parser.add_argument("--measured-band", type=float, metavar="B",
                        help="also keep only architectures whose latency, timed side by side with the --match network "
                             "(in turns, on the CPU), lies within ±B of its (e.g. 0.05); checked after --band")
    parser.add_argument("--side-by-side-iters", type=int, default=30, metavar="N",
                        help="timed calls of each network per side-by-side measurement (default 30)")
    parser.add_argument("--lut", metavar="LUT", help="FasterSeg latency table (terralite latency-table fasterseg); its "
                                                     "space and input size are the search's")
    parser.add_argument("--data", metavar="ROOT", required=True, help="dataset root (OpenEarthMap layout) or a data YAML")
    parser.add_argument("--out", metavar="RUN", required=True, help="run folder (created; rerun the command to resume it)")
    parser.add_argument("--objective", choices=["fasterseg", "miou"], default="fasterseg",
                        help="fasterseg: mIoU x (latency/target)^-0.07 (default); miou: mIoU alone")
    parser.add_argument("--eval-split", default="val", help="split each trained trial is evaluated on (default val)")
    parser.add_argument("--measure", action="store_true", help="also time every trained network end to end (FasterSeg: "
                                                               "with the table's runtime and device, at its size)")
    parser.add_argument("--size", type=int, default=1024, metavar="PX", help="SparseMask: input size its latency is measured at (default 1024)")
    parser.add_argument("--latency-runtime", choices=["onnxruntime", "torch"], default="onnxruntime",
                        help="SparseMask: runtime its latency is measured with, on the CPU (default onnxruntime)")
    parser.add_argument("--latency-warmup", type=int, default=3, metavar="N", help="untimed runs per measured latency (default 3)")
    parser.add_argument("--latency-iters", type=int, default=10, metavar="N", help="timed runs per measured latency; the median counts (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws / the tuner (default 0)")
    parser.add_argument("--width-skew", type=float, default=1.0, metavar="Q",
                        help="FasterSeg: prior of each node's width in draws and tuner proposals, P(choice k) ∝ Q**k "
                             "(default 1: uniform; e.g. 0.1 to reach a band near the fastest architectures)")
    parser.add_argument("--keep-prob", type=float, default=0.5, metavar="P",
                        help="SparseMask: probability that each connection is kept in draws and tuner proposals "
                             "(default 0.5: uniform; e.g. 0.08 to reach a band around a sparse network)")
    parser.add_argument("--train-preset", choices=["unet", "fasterseg", "sparsemask"],
                        help="training recipe of every trial (default: the space's own)")
    parser.add_argument("--train-config", metavar="YAML", help="training settings file for every trial")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one training setting (repeatable), e.g. --set optim.lr=0.01")
    parser.add_argument("--epochs", type=int, default=5, help="proxy budget: training epochs per trial (default 5; wins over --train-config)")
    parser.add_argument("--steps-per-epoch", type=int, help="proxy budget: optimizer steps per epoch (default: the whole split)")
    parser.add_argument("--batch-size", type=int, help="training batch size (default: the preset's)")
    parser.add_argument("--crop", type=int, help="training crop size (multiple of 32; default: the preset's)")
    parser.add_argument("--train-seed", type=int, help="training seed of every trial (default 0)")
    parser.add_argument("--device", help="training device: auto, cpu, cuda or cuda:N")
    parser.add_argument("--workers", type=int, help="data-loader workers per trial")
    parser.add_argument("--print-config", action="store_true", help="print the resolved settings as YAML and exit")


def multi_trial_config(args):
    """The :class:`~terralite.nas.multi_trial.config.MultiTrialConfig` the options describe."""
    from terralite.cli.options import data_fields
    from terralite.nas.multi_trial.config import resolve_multi_trial_config

    return resolve_multi_trial_config(
        args.train_preset, args.train_config, args.overrides,
        {**data_fields(args.data), "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch, "batch_size": args.batch_size,
         "crop": args.crop, "seed": args.train_seed, "device": args.device, "workers": args.workers},
        space=args.space, out=args.out, lut=args.lut, target_fps=args.target_fps, match=args.match, band=args.band,
        measured_band=args.measured_band, side_by_side_iters=args.side_by_side_iters,
        size=args.size, latency_runtime=args.latency_runtime, latency_warmup=args.latency_warmup,
        latency_iters=args.latency_iters, objective=args.objective, eval_split=args.eval_split, measure=args.measure,
        seed=args.seed, width_skew=args.width_skew, keep_prob=args.keep_prob,
    )


def print_summary(summary: dict, out: str) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in summary["counts"].items())
    best = summary.get("best")
    tail = f"; best {best['trial']}: mIoU {best['miou']:.4f} at {best['latency_ms']:.2f} ms" if best else "; nothing trained"
    print(f"{out}/trials.md: {counts}{tail}")
