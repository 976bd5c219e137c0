"""``terralite search sparsemask``: SparseMask sparse-connectivity search (optionally within a GMACs budget)."""

from __future__ import annotations

HELP = "SparseMask search: sparse dense-connectivity decoder on MobileNetV2 (optional GMACs budget)"
DESCRIPTION = (
    "Train the dense-decoder supernet (all 90 connections, one gate each) jointly with its gates on the whole "
    "training split of ROOT, then keep the connections whose gates survive. Writes RUN/arch.json (a model spec: "
    "retrain it with `terralite train --model RUN/arch.json --preset sparsemask`), RUN/connectivity.png, log.csv, "
    "run.log, gates.json and last.pt (resumable). --budget-gmacs G steers the search so that the derived network "
    "costs at most G GMACs at 1024x1024 (ours). Settings: preset <- --set key=value <- explicit options. "
    "Run under `torchrun --nproc_per_node=N` for DistributedDataParallel."
)


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="dataset root (OpenEarthMap layout with train.txt/val.txt)")
    parser.add_argument("--out", required=True, help="run folder to create (or to continue with --resume)")
    parser.add_argument("--preset", choices=["oem", "tiny"], help="oem (default: 50 epochs, 512 crops, batch 8, lambda 0.01) or tiny "
                        "(CPU check on 64 px synthetic tiles: 20 epochs, batch 2, lr 0.02, lambda 0.5 so the gates polarise)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--crop", type=int, help="random square crop size (multiple of 32; 0 = whole tiles)")
    parser.add_argument("--batch-size", type=int, help="global batch size (at least 2 per process)")
    parser.add_argument("--lambda", dest="sparsity_weight", type=float, metavar="L", help="sparsity loss weight (default 0.01)")
    parser.add_argument("--budget-gmacs", type=float, metavar="G", help="GMACs budget of the derived network at 1024x1024")
    parser.add_argument("--encoder-weights", help="torchvision mobilenet_v2 ImageNet weights file (.pth) for the encoder")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--amp", choices=["auto", "fp16", "bf16", "none"], help="mixed precision (default auto: bf16/fp16 on GPU)")
    parser.add_argument("--workers", type=int, help="data-loader workers per process")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--resume", action="store_true", help="continue the search in --out from its last.pt")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, e.g. --set lr=0.01 --set profile_size=512 (repeatable; see RUN/config.yaml)")


def run(args) -> int:
    from terralite.nas.sparsemask.search import resolve_search_config, search

    cfg = resolve_search_config(
        args.preset, args.overrides, data=args.data, out=args.out, epochs=args.epochs, crop=args.crop,
        batch_size=args.batch_size, sparsity_weight=args.sparsity_weight, budget_gmacs=args.budget_gmacs,
        encoder_weights=args.encoder_weights, device=args.device, amp=args.amp, workers=args.workers, seed=args.seed,
        resume=True if args.resume else None,
    )
    out = search(cfg)
    print(out / "arch.json")
    return 0
