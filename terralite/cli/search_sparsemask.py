"""``terralite search sparsemask``: SparseMask sparse-connectivity search (optionally within a GMACs budget)."""

from __future__ import annotations

HELP = "SparseMask search: sparse dense-connectivity decoder on MobileNetV2 (optional GMACs budget)"
DESCRIPTION = (
    "Train the dense-decoder supernet (all 90 connections, one gate each) jointly with its gates on the whole "
    "training split of ROOT, then keep the connections whose gates survive. Writes RUN/arch.json (a model spec: "
    "retrain it with `terralite train --model RUN/arch.json --preset sparsemask`), RUN/connectivity.png, log.csv, "
    "run.log, gates.json and last.pt (resumable). --budget-gmacs G steers the search so that the derived network "
    "costs at most G GMACs at 1024x1024 (ours). Settings: preset <- --config YAML <- --set key=value <- explicit options. "
    "Run under `torchrun --nproc_per_node=N` for DistributedDataParallel."
)


def add_arguments(parser) -> None:
    from terralite.cli.options import add_config_options

    parser.add_argument("--data", metavar="ROOT", help="dataset root (OpenEarthMap layout) or a data YAML (kind: large-raster, ...)")
    parser.add_argument("--out", metavar="RUN", help="run folder to create (or to continue with --resume)")
    parser.add_argument("--preset", choices=["oem", "tiny"], help="oem (default: 50 epochs, 512 crops, batch 8, lambda 0.01) or tiny "
                        "(CPU check on 64 px synthetic tiles: 20 epochs, batch 2, lr 0.02, lambda 0.5 so the gates polarise)")
    add_config_options(parser, "--set lr=0.01 --set profile_size=512")
    parser.add_argument("--epochs", type=int, help="search epochs")
    parser.add_argument("--crop", type=int, help="random square crop size (multiple of 32; 0 = whole tiles)")
    parser.add_argument("--batch-size", type=int, help="global batch size (at least 2 per process)")
    parser.add_argument("--lambda", dest="sparsity_weight", type=float, metavar="L", help="sparsity loss weight (default 0.01)")
    parser.add_argument("--budget-gmacs", type=float, metavar="G", help="GMACs budget of the derived network at 1024x1024")
    parser.add_argument("--pretrained", "--encoder-weights", dest="encoder_weights", metavar="FILE",
                        help="torchvision mobilenet_v2 ImageNet weights file (.pth) you provide, initialising the encoder "
                             "(not stored in arch.json; nothing is downloaded)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--amp", choices=["auto", "fp16", "bf16", "none"], help="mixed precision (default auto: bf16/fp16 on GPU)")
    parser.add_argument("--workers", type=int, help="data-loader workers per process")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.add_argument("--resume", action="store_true", help="continue the search in --out from its last.pt")


def run(args) -> int:
    from terralite.cli.options import data_fields, printed_config
    from terralite.nas.sparsemask.search import resolve_search_config, search

    cfg = resolve_search_config(
        args.preset, args.config, args.overrides,
        **{**data_fields(args.data), "out": args.out, "epochs": args.epochs, "crop": args.crop, "batch_size": args.batch_size,
           "sparsity_weight": args.sparsity_weight, "budget_gmacs": args.budget_gmacs, "encoder_weights": args.encoder_weights,
           "device": args.device, "amp": args.amp, "workers": args.workers, "seed": args.seed,
           "resume": True if args.resume else None},
    )
    if printed_config(args, cfg):
        return 0
    out = search(cfg)
    print(out / "arch.json")
    return 0
