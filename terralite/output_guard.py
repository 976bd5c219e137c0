"""Outputs never destroy inputs: an output that names an input is refused, and a folder is only ever removed
or rewritten by the command that created it (and marked it as its own).

Two mechanisms, used by every command that writes:

- :func:`refuse_output_over_inputs`: an output file (or folder) that resolves to one of the command's inputs
  (same path, a symlink or a hard link to it) is refused before anything is computed; :func:`check_cli_outputs`
  applies it to every parsed command line (each output option against every other path argument);
- ownership markers: :func:`claim_folder` creates (or adopts an empty) folder and writes ``.terralite-owner``
  naming the command that owns it; :func:`owns` tells whether a folder carries that mark, so a command only
  rewrites or removes folders it made.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Iterable

from terralite.errors import TerraLiteError

#: The file that marks a folder as made by a TerraLite command (JSON: {"owner": ...}).
OWNER_FILE = ".terralite-owner"

#: Option destinations that name what a command writes (every other path argument is an input).
OUTPUT_DESTS = ("out", "preview", "tensorrt", "save_predictions")
#: Metavars of output options that name a file (the others name folders).
FILE_METAVARS = ("FILE",)


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name the same file or folder (also through symlinks and hard links)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def refuse_output_over_inputs(output: str | os.PathLike | None, inputs: Iterable[str | os.PathLike | None],
                              option: str = "--out") -> None:
    """Raise :class:`TerraLiteError` when ``output`` is one of ``inputs`` (nothing is written yet)."""
    if output is None:
        return
    for source in inputs:
        if source is None or str(source) == "":
            continue
        if same_path(output, source):
            raise TerraLiteError(f"{option} {output} is also an input of this command ({source}); writing it would destroy "
                                 "the input: choose another output path")


def check_output_file(path: str | os.PathLike, option: str = "--out") -> Path:
    """An output file path: not an existing folder, in an existing, writable folder."""
    path = Path(path)
    if path.is_dir():
        raise TerraLiteError(f"{option} {path} is a folder; give a file name inside it, e.g. {path / 'output'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise TerraLiteError(f"output folder {parent} does not exist: create it first or choose another path for {option}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TerraLiteError(f"cannot write {option} {path}: folder {parent} is not writable; choose another path")
    if path.exists() and not os.access(path, os.W_OK):
        raise TerraLiteError(f"cannot write {option} {path}: the file is read-only; choose another path")
    return path


def _path_values(value) -> list[str]:
    if isinstance(value, (str, os.PathLike)):
        return [str(value)]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if isinstance(v, (str, os.PathLike))]
    return []


def _output_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, tuple[str, str | None]]:
    """dest → (option as typed, metavar) of the output options of the subcommand ``args`` selected."""
    found: dict[str, tuple[str, str | None]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            choice = getattr(args, action.dest, None)
            if choice in action.choices:
                found.update(_output_options(action.choices[choice], args))
        elif action.dest in OUTPUT_DESTS:
            found[action.dest] = (action.option_strings[-1] if action.option_strings else action.dest.upper(), action.metavar)
    return found


def check_cli_outputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every output option of a parsed command line against its inputs (every other path argument) and
    against the other outputs; an output file must not be a folder. Raises before the command runs."""
    outputs = {dest: spec for dest, spec in _output_options(parser, args).items()
               if isinstance(getattr(args, dest, None), (str, os.PathLike))}
    if not outputs:
        return
    inputs = [v for dest, value in vars(args).items() if dest not in OUTPUT_DESTS and not dest.startswith("_")
              for v in _path_values(value) if os.path.lexists(v)]
    seen: list[tuple[str, str]] = []
    for dest, (option, metavar) in outputs.items():
        value = str(getattr(args, dest))
        refuse_output_over_inputs(value, inputs, option)
        for other_option, other in seen:
            if same_path(value, other):
                raise TerraLiteError(f"{option} and {other_option} are the same path {value}; give each its own file")
        seen.append((option, value))
        if metavar in FILE_METAVARS:
            check_output_file(value, option)


def claim_folder(path: str | os.PathLike, owner: str, what: str = "output folder") -> Path:
    """Create ``path`` (its parent must exist) or adopt it when it is empty or already ``owner``'s, and mark it as
    ``owner``'s. A non-empty folder that ``owner`` did not create is refused: it may hold the user's data."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise TerraLiteError(f"{what} {path} exists and is not a folder; choose another path")
    if path.is_dir() and not owns(path, owner) and any(path.iterdir()):
        raise TerraLiteError(f"{what} {path} already holds files that `terralite {owner}` did not write (it may be your data); "
                             "choose another (new or empty) folder")
    if not path.parent.is_dir():
        raise TerraLiteError(f"parent folder {path.parent} of {path} does not exist; create it first")
    path.mkdir(exist_ok=True)
    if not owns(path, owner):
        (path / OWNER_FILE).write_text(json.dumps({"owner": owner}) + "\n")
    return path


def owns(path: str | os.PathLike, owner: str) -> bool:
    """True when folder ``path`` carries ``owner``'s mark (it created it)."""
    marker = Path(path) / OWNER_FILE
    try:
        return json.loads(marker.read_text()).get("owner") == owner
    except (OSError, ValueError, AttributeError):
        return False
