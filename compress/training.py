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
    # Given fields go through the config's own typing (a dataset root becomes the data config); None is a
    # value here ("no validation split"), so those are set after resolving.
    cfg = resolve_config(TrainConfig, None, overrides, base=base, fields={k: v for k, v in fields.items() if v is not None})
    return dataclasses.replace(cfg, **{k: v for k, v in fields.items() if v is None})


def split_or_none(split: str | None) -> str | None:
    """A split name as the user typed it: ``none`` (any case) or empty means no split (skip that evaluation)."""
    if isinstance(split, str) and split.strip().lower() in ("none", ""):
        return None
    return split


def resolve_options(cls: type, config: str | None = None, overrides: list[str] | None = None,
                    fields: dict[str, Any] | None = None, train_overrides: list[str] | None = None,
                    train_field: str | None = None):
    """The options dataclass ``cls`` of a compression command: defaults ← ``--config`` YAML ← ``--set``
    overrides ← the command's flags (``fields``, typed, None = not given); then ``train_overrides``
    (``--train-set``: settings of the training runs inside the job) appended to the list field ``train_field``.

    ``--set`` sets the command's own options; a training key given there (``--set batch_size=2``, which
    earlier versions read as a training override) is an error that points to ``--train-set``.
    """
    from terralite.config import resolve_config

    names = {f.name for f in dataclasses.fields(cls)}
    if train_field is not None:
        from terralite.engine.presets import TrainConfig

        train_names = {f.name for f in dataclasses.fields(TrainConfig)} | {"max_steps_per_epoch"}
        for item in overrides or []:
            key = item.split("=", 1)[0].strip().split(".")[0]
            if key not in names and key in train_names:
                raise TerraLiteError(
                    f"--set {item}: {key} is a setting of the training runs; pass it as --train-set {item} "
                    f"(--set sets this command's options: {', '.join(f.name for f in dataclasses.fields(cls))})"
                )
    cfg = resolve_config(cls, config, overrides, fields=fields)
    if train_field is not None and train_overrides:
        cfg = dataclasses.replace(cfg, **{train_field: [*getattr(cfg, train_field), *train_overrides]})
    return cfg


def require_options(opts: Any, flags: dict[str, str]) -> None:
    """Every option named in ``flags`` (field → the flag that sets it) must be given (not empty, not None).

    The options of a command that can come from a ``--config`` file are not required by the argument
    parser (``--print-config`` works without them); this is where a missing one is reported.
    """
    missing = [(name, flag) for name, flag in flags.items() if getattr(opts, name) in (None, "")]
    if missing:
        raise TerraLiteError(
            f"missing {', '.join(flag for _, flag in missing)}: give {'it' if len(missing) == 1 else 'them'} on the "
            f"command line or as {', '.join(name + ':' for name, _ in missing)} in the --config file"
        )


def check_new_run_folder(out: str | Path) -> Path:
    """A run folder that does not exist yet (or is empty) in an existing parent folder."""
    from terralite.atomic import ensure_parent

    out = ensure_parent(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        hint = " (pass --resume to continue the run there)" if (out / "config.yaml").is_file() else ""
        raise TerraLiteError(f"output {out} already exists and is not an empty folder; choose another --out{hint}")
    return out


#: Options that may differ between a compression run and its ``--resume`` (where it runs, not what it computes).
RESUME_MAY_CHANGE = ("resume", "device")


def check_run_folder(out: str | Path, options: Any) -> Path:
    """The run folder of a compression command: new (or empty), or with ``options.resume`` the folder of a
    killed run of the same command, whose ``config.yaml`` must hold the same options (a changed setting is
    refused, never silently ignored)."""
    from terralite.config import from_dict, load_yaml, to_dict

    if not getattr(options, "resume", False):
        return check_new_run_folder(out)
    out = Path(out)
    saved_path = out / "config.yaml"
    if not saved_path.is_file():
        raise TerraLiteError(f"nothing to resume: {saved_path} does not exist; drop --resume to start a new run in {out}")
    saved = to_dict(from_dict(type(options), load_yaml(saved_path)))
    given = to_dict(options)
    changed = [f"{key} {saved.get(key)!r} -> {given[key]!r}" for key in given
               if key not in RESUME_MAY_CHANGE and given[key] != saved.get(key)]
    if changed:
        raise TerraLiteError(f"--resume of {out} with other settings ({'; '.join(changed)}): give the run's own settings "
                             f"(as in {saved_path}; only {', '.join(RESUME_MAY_CHANGE[1:])} may change) or start a new --out")
    return out


@contextlib.contextmanager
def new_run_folder(out: Path, options: Any) -> Iterator[Path]:
    """Create (or, resuming, reopen) the (checked) run folder ``out``, locked, holding the command's resolved
    ``options`` as ``config.yaml`` (``--config`` takes it back); a user error (:class:`TerraLiteError`) raised inside the block removes the
    folder again, so that a refused run leaves nothing behind."""
    from terralite.atomic import write_text_atomic
    from terralite.config import dump_yaml

    from terralite.run_folder import RunLock

    created = not out.exists()
    out.mkdir(exist_ok=True)
    lock = RunLock(out)  # one writer per run folder (the fine-tunes inside lock their own sub-folders)
    try:
        from terralite.atomic import remove_stale_temporaries

        remove_stale_temporaries(out)  # unfinished writes of a killed run (on --resume)
        write_text_atomic(out / "config.yaml", dump_yaml(options))
        yield out
    except TerraLiteError:
        if created:
            lock.release()
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        lock.release()


def check_bench(size: int, iterations: int) -> None:
    """The latency rows' input side must suit every network (a multiple of 32) and time at least one call."""
    if size < 32 or size % 32:
        raise TerraLiteError(f"--bench-size must be a positive multiple of 32, got {size}")
    if iterations < 1:
        raise TerraLiteError(f"--bench-iters must be at least 1, got {iterations}")
