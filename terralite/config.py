"""Typed dataclass configs: YAML in, ``key=value`` overrides from the command line, resolved copy out.

Unknown keys and values of the wrong type are errors that name the key, never silently ignored.
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
        value = yaml.safe_load(raw) if raw else ""
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return result


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
        if not isinstance(value, dict):
            raise TerraLiteError(f"config key {where!r} must be a mapping, got {value!r}")
        return from_dict(annotation, value, prefix=where + ".")
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
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
        return float(value)
    if annotation in (int, float, str, bool):
        if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
            raise TerraLiteError(f"config key {where!r} must be {annotation.__name__}, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a (possibly partial) dict; missing keys keep their defaults."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise TerraLiteError(f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; valid: {', '.join(prefix + k for k in fields)}")
    kwargs = {name: _coerce(value, hints[name], prefix + name) for name, value in data.items()}
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def resolve_config(cls: type[T], yaml_path: str | Path | None = None, overrides: list[str] | None = None, base: dict | None = None) -> T:
    """Defaults ← ``base`` (e.g. a named preset) ← YAML file ← ``key=value`` overrides."""
    data = dict(base or {})
    if yaml_path:
        data = merge(data, load_yaml(yaml_path))
    data = merge(data, parse_overrides(overrides))
    return from_dict(cls, data)


def dump_yaml(cfg: Any) -> str:
    data = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    return yaml.safe_dump(data, sort_keys=False)
