"""Model specs: every network the suite produces is rebuilt from a small JSON-able dict.

``{"kind": "baseline", "name": "unet-resnet34", "num_classes": 8, "in_channels": 3}``,
``{"kind": "fasterseg", "arch": {...}, "num_classes": 8, "in_channels": 3}``,
``{"kind": "sparsemask", "arch": {...}, ...}`` or, for compressed models, a kind whose builder starts
from a base spec and replays a compression record (``{"kind": "pruned", "base": {...}, ...}``).

Builders live in the packages above the core and plug in through the ``terralite.model_kinds``
entry-point group (see ``pyproject.toml``): ``build_model`` never imports them by name.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from terralite.errors import TerraLiteError
from terralite.registry import Registry

MODEL_KINDS = Registry("model kind", entry_point_group="terralite.model_kinds")

DEFAULT_NUM_CLASSES = 8
DEFAULT_IN_CHANNELS = 3


def validate_spec(spec: Any, source: str = "model spec") -> dict:
    """Check the shape every spec shares; kind-specific checks belong to the kind's builder."""
    if not isinstance(spec, dict):
        raise TerraLiteError(f"{source}: a model spec must be a JSON object with a 'kind' field, got {type(spec).__name__}")
    kind = spec.get("kind")
    if not isinstance(kind, str):
        raise TerraLiteError(f"{source}: field 'kind' is missing or not a string; valid kinds: {', '.join(MODEL_KINDS.names())}")
    if kind not in MODEL_KINDS:
        raise TerraLiteError(f"{source}: unknown model kind {kind!r}; valid kinds: {', '.join(MODEL_KINDS.names())}")
    for key in ("num_classes", "in_channels"):
        value = spec.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise TerraLiteError(f"{source}: field {key!r} must be a positive integer, got {value!r}")
    _check_sizes(spec, source)
    return spec


#: The largest values a spec may hold, refused before anything is allocated: a class map is uint8 (1..255
#: classes), and no segmentation network of this suite comes near these band counts or channel widths.
SIZE_LIMITS = {"num_classes": 255, "in_channels": 256, "width": 8192}
#: How deep a spec may nest (the deepest real spec, a pruned network of a pruned network, is a few levels).
MAX_SPEC_DEPTH = 32


def _check_sizes(value: Any, source: str, key: str = "", depth: int = 0) -> None:
    """Every integer under a ``num_classes``/``in_channels``/``*width*`` key (at any depth) within
    :data:`SIZE_LIMITS`, and the spec no deeper than :data:`MAX_SPEC_DEPTH`."""
    if depth > MAX_SPEC_DEPTH:
        raise TerraLiteError(f"{source}: the spec nests deeper than {MAX_SPEC_DEPTH} levels; it is not a TerraLite model spec")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_sizes(v, source, str(k), depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_sizes(v, source, key, depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool):
        limit = SIZE_LIMITS.get(key, SIZE_LIMITS["width"] if "width" in key else None)
        if limit is not None and value > limit:
            raise TerraLiteError(f"{source}: field {key!r} is {value}, above the limit of {limit}; fix the spec")


def load_weights(model, state_dict: dict, source: str):
    """``model.load_state_dict(state_dict)``; weights of another network are one clear error naming ``source``."""
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
        detail = (str(exc).strip().splitlines() or [""])[0][:160]
        raise TerraLiteError(f"{source}: its weights do not belong to the network its spec describes ({detail}); "
                             "use the checkpoint its run wrote") from None
    return model


def with_io(spec: dict, in_channels: int | None = None, num_classes: int | None = None) -> dict:
    """Return a copy of ``spec`` with its input bands and classes filled in (defaults: 3 bands, 8 classes)."""
    spec = copy.deepcopy(spec)
    if in_channels is not None:
        spec["in_channels"] = in_channels
    if num_classes is not None:
        spec["num_classes"] = num_classes
    spec.setdefault("in_channels", DEFAULT_IN_CHANNELS)
    spec.setdefault("num_classes", DEFAULT_NUM_CLASSES)
    return spec


def build_model(spec: dict, pretrained: str | Path | None = None):
    """Turn any spec into an ``nn.Module`` (weights freshly initialised).

    ``pretrained`` is a weights file the user provides to initialise the network (nothing is downloaded):
    kinds whose builder declares ``pretrained_weights`` (a phrase naming the file it expects) take it, as
    the spec field ``pretrained``; it is not kept in the spec a checkpoint stores, since it only initialises.
    """
    spec = with_io(validate_spec(spec))
    builder = MODEL_KINDS.get(spec["kind"])
    if pretrained is None:
        return builder(spec)
    expected = getattr(builder, "pretrained_weights", None)
    if expected is None:
        takers = [k for k in MODEL_KINDS.names() if getattr(MODEL_KINDS.get(k), "pretrained_weights", None)]
        raise TerraLiteError(f"model kind {spec['kind']!r} takes no pretrained weights; --pretrained applies to kinds {', '.join(takers)}")
    if not Path(pretrained).is_file():
        raise TerraLiteError(f"pretrained weights file {pretrained} does not exist; {describe(spec)} expects {expected} "
                             "(nothing is downloaded: save the file there first)")
    return builder({**spec, "pretrained": str(pretrained)})


def spec_hash(spec: dict) -> str:
    """A short stable fingerprint of a spec (canonical JSON, SHA-256)."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def describe(spec: dict) -> str:
    """A short human name for a spec: the baseline name, or the arch file's label."""
    return spec.get("label") or spec.get("name") or f"{spec['kind']}-{spec_hash(spec)}"


def load_spec_file(path: str | Path) -> dict:
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise TerraLiteError(f"model spec file {path} does not exist") from None
    except IsADirectoryError:
        raise TerraLiteError(f"model spec file {path} is a folder; pass a JSON file (e.g. RUN/arch.json)") from None
    except json.JSONDecodeError as exc:
        raise TerraLiteError(f"model spec file {path} is not valid JSON ({exc.msg} at line {exc.lineno}); fix or regenerate it") from None
    except UnicodeDecodeError:
        raise TerraLiteError(f"model spec file {path} is not UTF-8 text (a binary file?); pass a JSON spec") from None
    except RecursionError:
        raise TerraLiteError(f"model spec file {path} nests too deeply to be a model spec; fix or regenerate it") from None
    return validate_spec(spec, source=str(path))


def resolve_model_reference(ref: str, in_channels: int | None = None, num_classes: int | None = None) -> tuple[dict, dict | None]:
    """Turn what a user typed as MODEL into ``(spec, checkpoint or None)``.

    ``ref`` is a registered baseline name, a spec/architecture JSON file, or a TerraLite checkpoint.
    """
    path = Path(ref)
    if path.suffix == ".json":
        return with_io(load_spec_file(path), in_channels, num_classes), None
    if path.suffix in {".pt", ".pth", ".ckpt"} or path.is_file():
        from terralite.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        return with_io(ckpt["spec"], in_channels, num_classes), ckpt
    # Anything else names a registered baseline; its builder rejects unknown names with the list.
    return with_io({"kind": "baseline", "name": ref}, in_channels, num_classes), None


def load_model(ref: str, in_channels: int | None = None, num_classes: int | None = None):
    """Build the model a reference names, with its checkpoint weights when it is a checkpoint.

    Returns ``(model, spec, checkpoint or None)``; the model is in eval mode.
    """
    spec, ckpt = resolve_model_reference(ref, in_channels, num_classes)
    model = build_model(spec)
    if ckpt is not None:
        load_weights(model, ckpt["state_dict"], f"checkpoint {ref}")
    return model.eval(), spec, ckpt
