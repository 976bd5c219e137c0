"""Command-line options every job shares: ``--config``, ``--set``, ``--print-config``; and ``--threads``.

A job's settings resolve through one path (:func:`terralite.config.resolve_config`): defaults ← preset ←
``--config`` YAML ← ``--set key=value`` ← the command's own flags, which set typed fields directly. With
``--print-config`` the command prints the resolved config as YAML and exits without running; that output,
given back as ``--config``, resolves to the same config.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_config_options(parser: argparse.ArgumentParser, example: str = "--set epochs=3") -> None:
    parser.add_argument("--config", metavar="YAML", help="settings file (e.g. the config.yaml of an earlier run)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override one setting, value parsed as YAML (repeatable), e.g. {example}")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved settings as YAML and exit without running")


def data_fields(value: str | None) -> dict:
    """``--data``: a dataset root sets ``data.root``; a ``.yaml`` file is a whole data config (kind, rasters...)."""
    if value is None:
        return {}
    if value.lower().endswith((".yaml", ".yml")):
        return {"data": value}  # DataConfig.from_value reads the file
    return {"data.root": value}


def printed_config(args: argparse.Namespace, cfg: Any) -> bool:
    """Print ``cfg`` and return True when ``--print-config`` was given (the caller then returns 0)."""
    if not getattr(args, "print_config", False):
        return False
    from terralite.config import dump_yaml

    print(dump_yaml(cfg), end="")
    return True


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: CPU threads, so that jobs sharing a machine do not oversubscribe it."""
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch (torch.set_num_threads) and ONNX Runtime's intra-op pool "
                             "(default: the libraries' choice, all cores)")


def set_threads(threads: int | None) -> None:
    """Apply ``--threads`` to torch (process-wide); None leaves the library default."""
    if threads is None:
        return
    if threads < 1:
        from terralite.errors import TerraLiteError

        raise TerraLiteError(f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)
