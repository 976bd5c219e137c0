"""``terralite search nni``: a multi-trial search driven by an NNI experiment (extra ``terralite[nni]``)."""

from __future__ import annotations

from terralite.cli.multi_trial_options import MULTI_TRIAL_NOTES

HELP = "multi-trial search with an NNI 3.0 experiment and tuner (random, tpe, evolution, anneal)"
DESCRIPTION = ("Run an NNI experiment on this machine (its manager on localhost, its folder in RUN/nni): the tuner "
               "proposes architectures, one trial process each. " + MULTI_TRIAL_NOTES + " Needs pip install 'terralite[nni]'.")


def add_arguments(parser) -> None:
    from terralite.cli.multi_trial_options import add_multi_trial_arguments

    add_multi_trial_arguments(parser)
    parser.add_argument("--tuner", choices=["random", "tpe", "evolution", "anneal"], default="tpe", help="NNI tuner (default tpe)")
    parser.add_argument("--trials", type=int, required=True, metavar="N",
                        help="architectures to train; proposals outside the band are rejected and do not count")
    parser.add_argument("--max-proposals", type=int, metavar="N",
                        help="give up after N proposals, rejected ones included (default 20 x --trials)")
    parser.add_argument("--concurrency", type=int, default=1, metavar="N", help="trials run at once (default 1)")
    parser.add_argument("--port", type=int, help="port of NNI's manager (default: a free one)")


def run(args) -> int:
    from terralite.cli.multi_trial_options import multi_trial_config, print_summary
    from terralite.cli.options import printed_config
    from terralite.nas.multi_trial.nni_search import nni_search

    cfg = multi_trial_config(args)
    if printed_config(args, cfg):
        return 0
    print_summary(nni_search(cfg, args.tuner, args.trials, args.concurrency, args.port, args.max_proposals), cfg.out)
    return 0
