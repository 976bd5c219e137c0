"""``terralite search random``: the latency-matched random baseline."""

from __future__ import annotations

from terralite.cli.multi_trial_options import MULTI_TRIAL_NOTES

HELP = "latency-matched random baseline: K random architectures within a latency band, trained alike"
DESCRIPTION = ("Draw architectures with the space's sampler (seeded), keep the first --samples K whose latency lies "
               "within the band, and train each. " + MULTI_TRIAL_NOTES)


def add_arguments(parser) -> None:
    from terralite.cli.multi_trial_options import add_multi_trial_arguments

    add_multi_trial_arguments(parser)
    parser.add_argument("--samples", type=int, required=True, metavar="K", help="architectures to train")
    parser.add_argument("--max-draws", type=int, default=2000, metavar="N", help="give up after N draws (default 2000)")


def run(args) -> int:
    from terralite.cli.multi_trial_options import multi_trial_config, print_summary
    from terralite.cli.options import printed_config
    from terralite.nas.multi_trial.random_search import random_search

    cfg = multi_trial_config(args)
    if printed_config(args, cfg):
        return 0
    print_summary(random_search(cfg, args.samples, args.max_draws), cfg.out)
    return 0
