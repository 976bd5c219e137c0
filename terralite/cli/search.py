"""``terralite search METHOD``: run an architecture search (one sub-subcommand per search method)."""

from __future__ import annotations

import importlib

HELP = "run an architecture search (fasterseg, sparsemask; multi-trial: random, nni)"

# search method → module defining add_arguments(parser) and run(args)
METHODS = {
    "fasterseg": "terralite.cli.search_fasterseg",
    "sparsemask": "terralite.cli.search_sparsemask",
    "random": "terralite.cli.search_random",
    "nni": "terralite.cli.search_nni",
}


def add_arguments(parser) -> None:
    methods = parser.add_subparsers(dest="method", metavar="METHOD", required=True)
    for name, module_name in METHODS.items():
        module = importlib.import_module(module_name)
        method_parser = methods.add_parser(name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP))
        module.add_arguments(method_parser)
        method_parser.set_defaults(_search_run=module.run)


def run(args) -> int | None:
    return args._search_run(args)
