"""The ``terralite`` command: one subcommand per module of this package.

Each subcommand module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args)``; it
imports heavy libraries inside ``run`` so that ``terralite --help`` stays fast. User errors
(:class:`~terralite.errors.TerraLiteError`) end in one line on stderr and exit status 2. Third-party
warnings a user cannot act on are hidden while a subcommand runs (:func:`quiet_library_warnings`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from terralite import __version__
from terralite.errors import TerraLiteError

#: The test-time augmentation modes of :data:`terralite.tta.TTA_MODES`, spelled out so that building the
#: parser imports no torch (a test keeps the two equal). Evaluation, prediction and the benchmark take these.
TTA_MODE_NAMES = ("none", "hflip", "flips", "d4")
TTA_HELP = ("none; hflip = identity + horizontal flip (the OpenEarthMap protocol); flips = the 4 flips; "
            "d4 = the 8 rotations/flips of a square tile (logits summed)")

# subcommand name → module (in the order --help lists them)
SUBCOMMANDS = {
    "models": "terralite.cli.models",
    "data": "terralite.cli.data",
    "train": "terralite.cli.train",
    "eval": "terralite.cli.eval",
    "throughput": "terralite.cli.throughput",
    "search": "terralite.cli.search",
    "latency-table": "terralite.cli.latency_table",
    "latency-check": "terralite.cli.latency_check",
    "profile": "terralite.cli.profile",
    "bench": "terralite.cli.bench",
    "leaderboard": "terralite.cli.leaderboard",
    "prune": "terralite.cli.prune",
    "distill": "terralite.cli.distill",
    "quantize": "terralite.cli.quantize",
    "export": "terralite.cli.export",
    "predict": "terralite.cli.predict",
    "card": "terralite.cli.card",
    "demo": "terralite.cli.demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="terralite",
        description="Architecture search, compression and benchmarking of land-cover segmentation networks.",
    )
    parser.add_argument("--version", action="version", version=f"terralite {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sub_parser = sub.add_parser(name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP))
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_run=module.run)
    return parser


#: Libraries whose UserWarnings are notes to their own developers (tracing, export internals), not to a user.
QUIET_LIBRARIES = r"(torch|torchvision|timm|segmentation_models_pytorch|fvcore|torch_pruning|onnx|onnxscript|onnxruntime|rasterio)(\.|$)"


def quiet_library_warnings() -> None:
    """Hide the third-party warnings a user cannot act on: deprecations (of what the libraries call from each
    other), torch's tracer warnings and library-internal UserWarnings. Only the ``terralite`` command does this
    (the library leaves warnings alone); ``python -W ...`` or ``PYTHONWARNINGS`` keeps every warning."""
    import warnings

    if sys.warnoptions:
        return
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    # torch.jit.TracerWarning (fvcore traces networks to count MACs), matched by message: no torch import here
    warnings.filterwarnings("ignore", message=r"(Converting a tensor to a Python|torch\.tensor results are registered as "
                                              r"constants|Iterating over a tensor might cause the trace)")
    warnings.filterwarnings("ignore", category=UserWarning, module=QUIET_LIBRARIES)


def main(argv: list[str] | None = None) -> int:
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from terralite.output_guard import check_cli_outputs

        check_cli_outputs(parser, args)  # an output that is an input is refused before anything runs
        with warnings.catch_warnings():
            quiet_library_warnings()
            status = args._run(args)
    except TerraLiteError as exc:
        print(f"terralite: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("terralite: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)
