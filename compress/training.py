"""Training configs for compression runs (fine-tuning after pruning, distillation), built on the engine's.

A compressed model is trained the way its parent was: the parent checkpoint's saved ``TrainConfig`` (or, for
an untrained spec, the preset of its kind) is the base, then the user's ``key=value`` overrides, then the
fields the compression command sets (model, data, out, epochs, ...).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from pathlib import Path
from typing import Any, Iterator

from terralite.errors import TerraLiteError

# Preset of the engine used for a model kind when no parent config exists.
PRESET_OF_KIND = {"fasterseg": "fasterseg", "sparsemask": "sparsemask"}


def preset_for(spec: dict) -> str:
    """The engine preset that trains a spec's kind (a pruned spec trains like its base)."""
    while spec.get("kind") == "pruned":
        spec = spec["base"]
    return PRESET_OF_KIND.get(spec.get("kind"), "unet")


def compression_train_config(parent_config: dict | None, spec: dict, overrides: list[str] | None = None, **fields: Any):
    """``TrainConfig`` = parent's config (or the kind's preset) ← ``overrides`` ← ``fields``.

    Resuming, a teacher inherited from the parent's own training and its output folder never carry over.
    """
    from terralite.config import from_dict, resolve_config, to_dict
    from terralite.engine.presets import TrainConfig, preset_dict

    if parent_config:
        base = to_dict(from_dict(TrainConfig, parent_config))
        base.update({"resume": False, "teacher": None})
    else:
        base = preset_dict(preset_for(spec))
    cfg = resolve_config(TrainConfig, None, overrides, base=base)
    return dataclasses.replace(cfg, **fields)


def check_new_run_folder(out: str | Path) -> Path:
    """A run folder that does not exist yet (or is empty) in an existing parent folder."""
    from terralite.atomic import ensure_parent

    out = ensure_parent(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TerraLiteError(f"output {out} already exists and is not an empty folder; choose another --out")
    return out


@contextlib.contextmanager
def new_run_folder(out: Path) -> Iterator[Path]:
    """Create the (checked) run folder ``out``; a user error (:class:`TerraLiteError`) raised inside the block
    removes it again, so that a refused run leaves nothing behind."""
    created = not out.exists()
    out.mkdir(exist_ok=True)
    try:
        yield out
    except TerraLiteError:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise


def check_bench(size: int, iterations: int) -> None:
    """The latency rows' input side must suit every network (a multiple of 32) and time at least one call."""
    if size < 32 or size % 32:
        raise TerraLiteError(f"--bench-size must be a positive multiple of 32, got {size}")
    if iterations < 1:
        raise TerraLiteError(f"--bench-iters must be at least 1, got {iterations}")
