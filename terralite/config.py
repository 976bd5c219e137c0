"""Typed dataclass configs: the one config path of every job.

A job's config is resolved as: dataclass defaults ← a named preset ← ``--config`` YAML ← ``--set key=value``
overrides (values parsed as YAML) ← explicit command-line flags, which set typed fields directly (dotted
names, never re-parsed: ``--out 2024`` is the folder "2024", ``--lut null`` the file "null"). The resolved
copy is written into the run folder as ``config.yaml`` and loads back through the same path.

Unknown keys and values of the wrong type are errors that name the key, never silently ignored. A config
class may define ``migrate(data) -> data`` (a classmethod) to read the keys older versions wrote; a nested
dataclass may define ``from_value(value)`` to accept a shorthand (e.g. a dataset root for a data config).
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from terralite.errors import TerraLiteError

T = TypeVar("T")


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise TerraLiteError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise TerraLiteError(f"config file {path} is a folder; pass a YAML file (e.g. RUN/config.yaml)") from None
    except UnicodeDecodeError:
        raise TerraLiteError(f"config file {path} is not UTF-8 text; pass a YAML file") from None
    except yaml.YAMLError as exc:
        raise TerraLiteError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TerraLiteError(f"config file {path} must hold a mapping of keys to values, got {type(data).__name__}")
    return data


def parse_overrides(items: list[str] | None) -> dict:
    """``["optim.lr=0.01", "epochs=3"]`` → nested dict with YAML-typed values."""
    result: dict = {}
    for item in items or []:
        if "=" not in item:
            raise TerraLiteError(f"override {item!r} must look like key=value (e.g. epochs=3 or optim.lr=0.01)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as exc:
            raise TerraLiteError(f"override {item!r}: the value is not valid YAML ({str(exc).splitlines()[0]}); "
                                 "quote it, e.g. key='text'") from None
        set_dotted(result, key, value)
    return result


def set_dotted(data: dict, key: str, value: Any) -> None:
    """``set_dotted(d, "target.fps", 8.0)`` → ``d["target"]["fps"] = 8.0`` (creating the inner mappings)."""
    parts = key.strip().split(".")
    if not all(parts):
        raise TerraLiteError(f"config key {key!r} is malformed (empty part); use names like epochs or optim.lr")
    node = data
    for part in parts[:-1]:
        inner = node.get(part)
        if not isinstance(inner, dict):
            inner = node[part] = {}
        node = inner
    node[parts[-1]] = value


def merge(base: dict, update: dict) -> dict:
    """Recursive dict merge; ``update`` wins."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict) and hasattr(annotation, "from_value"):
            return annotation.from_value(value)
        if not isinstance(value, dict):
            raise TerraLiteError(f"config key {where!r} must be a mapping, got {value!r}")
        return from_dict(annotation, value, prefix=where + ".")
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (int in args or float in args):
            _check_number(value, where)  # a number of the right kind but a wrong value: say so, not "not a int | None"
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except TerraLiteError:
                continue
        raise TerraLiteError(f"config key {where!r}: {value!r} is not a {annotation}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TerraLiteError(f"config key {where!r} must be a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise TerraLiteError(f"config key {where!r} must be a mapping, got {value!r}")
        return dict(value)
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if annotation in (int, float, str, bool):
        if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
            raise TerraLiteError(f"config key {where!r} must be {annotation.__name__}, got {value!r}")
        if annotation in (int, float):
            _check_number(value, where)
        return value
    return value


#: Settings that only make sense >= 0 (by the last part of their key), and those that must be > 0.
NON_NEGATIVE = ("weight_decay", "momentum", "workers", "lr_mult", "grad_clip", "epochs", "warmup_steps", "alpha")
POSITIVE = ("lr", "batch_size")


def _check_number(value: float | int, where: str) -> None:
    """No setting is NaN or infinite; learning rates, decays, worker counts... have a sign (one clear line, not an
    optimiser's traceback later)."""
    import math

    name = where.rsplit(".", 1)[-1]
    if not math.isfinite(value):
        raise TerraLiteError(f"config key {where!r} must be a finite number, got {value!r}")
    if (name in POSITIVE or name.endswith("_lr") or name.startswith("lr_")) and value <= 0:
        raise TerraLiteError(f"config key {where!r} must be greater than 0, got {value!r}")
    if any(name == n or name.endswith("_" + n) for n in NON_NEGATIVE) and value < 0:
        raise TerraLiteError(f"config key {where!r} must be 0 or more, got {value!r}")


def from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a (possibly partial) dict; missing keys keep their defaults."""
    if hasattr(cls, "migrate"):
        data = cls.migrate(dict(data))
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise TerraLiteError(f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; valid: {', '.join(prefix + k for k in fields)}")
    kwargs = {name: _coerce(value, hints[name], prefix + name) for name, value in data.items()}
    return cls(**kwargs)


def migrate_job_keys(data: dict) -> dict:
    """Read the keys TerraLite 0.1 wrote in job configs: ``max_steps_per_epoch`` (now ``steps_per_epoch``) and
    top-level ``bands``/``skip_missing`` (now under ``data``, which was a plain root path)."""
    if "max_steps_per_epoch" in data:
        data["steps_per_epoch"] = data.pop("max_steps_per_epoch") or 0
    moved = {key: data.pop(key) for key in ("bands", "skip_missing") if key in data}
    if moved:
        inner = data.get("data")
        inner = {"root": inner} if isinstance(inner, str) else dict(inner or {})
        data["data"] = {**inner, **moved}
    return data


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def preset_name(flag: str | None, yaml_path: str | Path | None, overrides: list[str] | None, default: str) -> str:
    """The preset a job starts from: ``--preset``, else the ``preset`` key of ``--set`` or the YAML, else ``default``."""
    return (flag or parse_overrides(overrides).get("preset") or (load_yaml(yaml_path) if yaml_path else {}).get("preset")
            or default)


def _anchored_data(mapping: dict, yaml_path: str | Path) -> dict:
    """``data: other.yaml`` in a config file: the data config of that file, read now (so that ``--set data.x=``
    adjusts it). A relative path names a file beside the config (as paths in a data YAML do); one that exists only
    relative to the working folder (older configs) keeps working."""
    value = mapping.get("data")
    if isinstance(value, str) and value.lower().endswith((".yaml", ".yml")) and not Path(value).expanduser().is_absolute():
        beside = Path(yaml_path).parent / value
        if beside.is_file() or not Path(value).is_file():
            value = str(beside)
        # read it now, so that --set data.window=... adjusts that data config instead of replacing it
        from terralite.data.registry import DataConfig

        mapping = {**mapping, "data": to_dict(DataConfig.from_value(value))}
    return mapping


def resolve_config(cls: type[T], yaml_path: str | Path | None = None, overrides: list[str] | None = None,
                   base: dict | None = None, fields: dict[str, Any] | None = None, replace: tuple[str, ...] = ()) -> T:
    """Defaults ← ``base`` (e.g. a named preset) ← YAML file ← ``key=value`` overrides ← ``fields``.

    ``fields`` are explicit command-line flags by dotted config name (``{"target.fps": 8.0, "out": "2024"}``),
    already typed by the parser and set as they are; None means "not given". A top-level key in ``replace``
    that the YAML or the overrides give replaces the base's value instead of merging into it (a loss given by
    the user replaces the preset's loss rather than adding terms to it).
    """
    user = merge(_anchored_data(load_yaml(yaml_path), yaml_path) if yaml_path else {}, parse_overrides(overrides))
    data = dict(base or {})
    if hasattr(cls, "migrate"):  # old key names in a preset-less YAML meet their new names in the base
        user = cls.migrate(user)
    for key in replace:
        if key in user:
            data.pop(key, None)
    data = merge(data, user)
    for key, value in (fields or {}).items():
        if value is not None:
            set_dotted(data, key, value)
    return from_dict(cls, data)


def dump_yaml(cfg: Any) -> str:
    data = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    return yaml.safe_dump(data, sort_keys=False)
