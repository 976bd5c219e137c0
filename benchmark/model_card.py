"""A Markdown model card of a checkpoint (``terralite card CKPT``): what the network is, what it was trained
on and how, how well it did, and with which library versions — all read from the checkpoint itself
(its spec, config, metrics, input record and versions), plus parameters and GMACs counted now."""

from __future__ import annotations

import json
from pathlib import Path

#: Training settings a card lists under "Recipe", in this order (those a checkpoint's config holds).
RECIPE_FIELDS = ("preset", "pretrained", "epochs", "batch_size", "accumulate", "crop", "augment", "loss", "aux_weight",
                 "optim", "schedule", "steps_per_epoch", "teacher", "kd_tau", "kd_alpha", "amp", "device", "seed")


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return "`" + json.dumps(value, sort_keys=True) + "`"
    return "—" if value is None else f"`{value}`"


def _table(rows: list[tuple[str, str]]) -> list[str]:
    return ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]


def model_card(ckpt_path: str | Path, size: int = 1024) -> str:
    """The Markdown card of the checkpoint at ``ckpt_path``; params/GMACs at ``1 x C x size x size``."""
    from terralite.benchmark.profiler import profile_model
    from terralite.checkpoint import load_checkpoint
    from terralite.errors import TerraLiteError
    from terralite.models import build_model, describe, spec_hash
    from terralite.predict import default_class_names

    if size < 32 or size % 32:
        raise TerraLiteError(f"--size {size} must be a positive multiple of 32 (every network downsamples by 32)")
    path = Path(ckpt_path)
    ckpt = load_checkpoint(path)
    spec, config = ckpt["spec"], ckpt.get("config") or {}
    model = build_model(spec)
    model.load_state_dict(ckpt["state_dict"])
    counted = profile_model(model.eval(), size, spec.get("in_channels", 3))
    name = describe(spec)
    lines = [f"# Model card: {name}", "", f"Checkpoint `{path}`, spec hash `{spec_hash(spec)}`.", ""]

    lines += ["## Network", ""]
    lines += _table([
        ("kind", _value(spec.get("kind"))),
        ("name", _value(spec.get("name") or spec.get("label"))),
        ("input bands", _value(spec.get("in_channels"))),
        ("classes", ", ".join(f"{i} {n}" for i, n in enumerate(default_class_names(spec.get("num_classes", 8), ckpt), 1))),
        ("parameters (deployed)", f"{counted['params_m']:.3f} M"),
        (f"GMACs at {size}x{size}", f"{counted['gmacs']:.2f} (fvcore; torch flop counter {counted['flop_counter_gmacs']:.2f})"),
    ])
    lines += ["", "<details><summary>spec</summary>", "", "```json", json.dumps(spec, indent=1, sort_keys=True), "```",
              "", "</details>", ""]

    data = config.get("data") or {}
    norm = ckpt.get("input") or {}
    lines += ["## Training data", ""]
    lines += _table([
        ("dataset", _value(data.get("root") or data.get("image"))),
        ("kind", _value(data.get("kind"))),
        ("splits", f"train {_value(config.get('train_split'))}, validation {_value(config.get('val_split'))}"),
        ("input bands (0-based)", _value(norm.get("bands")) if norm.get("bands") is not None else "all"),
        ("normalisation mean", _value(norm.get("mean"))),
        ("normalisation std", _value(norm.get("std"))),
    ])
    lines += ["", "## Recipe", ""]
    lines += _table([(key, _value(config[key])) for key in RECIPE_FIELDS if key in config] or [("config", "not recorded")])

    metrics = ckpt.get("metrics") or {}
    lines += ["", "## Metrics", ""]
    rows = [("epoch", _value(ckpt.get("epoch")))] + [(k, _value(v)) for k, v in sorted(metrics.items())]
    lines += _table(rows)
    lines += ["", "## Versions", ""]
    lines += _table([(k, _value(v)) for k, v in sorted((ckpt.get("versions") or {}).items())] or [("versions", "not recorded")])
    return "\n".join(lines) + "\n"
