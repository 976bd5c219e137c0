"""``terralite train``: train a network (baseline name, architecture/spec JSON or checkpoint) on a dataset."""

from __future__ import annotations

HELP = "train a network on a dataset (presets: unet, fasterseg, sparsemask, bolm)"
DESCRIPTION = (
    "Train MODEL (a baseline name, a spec/architecture JSON such as RUN/student.json, or a checkpoint to fine-tune) "
    "on the dataset ROOT (OpenEarthMap layout, or any registered kind through data.kind), writing config.yaml, "
    "log.csv, last.pt and best.pt into RUN. Settings: preset <- --config YAML <- --set key=value <- explicit options. "
    "Run under `torchrun --nproc_per_node=N` for DistributedDataParallel."
)


def add_arguments(parser) -> None:
    from terralite.cli.options import add_config_options, add_threads_option

    parser.add_argument("--model", help="baseline name, spec/architecture JSON, or checkpoint (required unless in --config)")
    parser.add_argument("--data", metavar="ROOT", help="dataset root (OpenEarthMap layout) or a data YAML (kind: large-raster, ...)")
    parser.add_argument("--out", metavar="RUN", help="run folder to create (or to continue with --resume)")
    from terralite.engine.presets import PRESETS

    parser.add_argument("--preset", choices=list(PRESETS), help="training recipe (default: unet; bolm: DeepLabV3+ "
                                                                "ResNet-50 on 513 px large-raster windows)")
    add_config_options(parser, "--set optim.lr=0.01 --set 'loss={ce: 1, lovasz: 1}' --set data.kind=large-raster "
                               "(a loss given here or in --config replaces the preset's loss)")
    parser.add_argument("--pretrained", metavar="FILE", help="weights file you provide initialising the network: for "
                        "baselines the network's or its encoder's state dict (e.g. torchvision's ImageNet resnet34 .pth "
                        "for unet-resnet34), for SparseMask architectures torchvision mobilenet_v2 ImageNet weights; "
                        "nothing is downloaded")
    parser.add_argument("--epochs", type=int, help="training epochs")
    parser.add_argument("--batch-size", type=int, help="global batch size (split across torchrun processes)")
    parser.add_argument("--crop", type=int, help="random square crop size (multiple of 32; 0 = whole tiles)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--amp", choices=["auto", "fp16", "bf16", "none"], help="mixed precision (default auto)")
    parser.add_argument("--workers", type=int, help="data-loader workers per process (default: 0 on CPU, up to 8 per GPU)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    parser.add_argument("--teacher", metavar="CKPT", help="teacher checkpoint: add a logits KL distillation term")
    parser.add_argument("--kd-tau", type=float, help="distillation temperature (default 1)")
    parser.add_argument("--kd-alpha", type=float, help="distillation weight (default 1)")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    add_threads_option(parser)


def run(args) -> int:
    from terralite.cli.options import data_fields, printed_config, set_threads
    from terralite.engine.presets import resolve_train_config
    from terralite.engine.train import train

    cfg = resolve_train_config(
        args.preset, args.config, args.overrides,
        **{"model": args.model, "pretrained": args.pretrained, **data_fields(args.data), "out": args.out, "epochs": args.epochs, "batch_size": args.batch_size,
           "crop": args.crop, "device": args.device, "amp": args.amp, "workers": args.workers,
           "resume": True if args.resume else None, "teacher": args.teacher, "kd_tau": args.kd_tau,
           "kd_alpha": args.kd_alpha, "seed": args.seed},
    )
    if printed_config(args, cfg):
        return 0
    set_threads(args.threads)
    train(cfg)
    return 0
