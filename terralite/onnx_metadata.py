"""TerraLite metadata in ONNX ``metadata_props``: what makes an exported file self-describing.

``terralite export`` writes the model spec, the input normalisation and the class names; ``terralite quantize``
carries them into its int8 file; ``terralite predict`` and ``terralite bench`` read them back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from terralite.atomic import atomic_path
from terralite.errors import TerraLiteError

#: Metadata keys written into ONNX ``metadata_props`` by ``terralite export`` and read back here.
ONNX_METADATA_KEYS = {
    "spec": "terralite.spec",  # JSON model spec
    # JSON {"bands": [...] | null, "mean": [...], "std": [...]} (raw pixel units), plus "inputs": [...] for models
    # trained on named inputs (Sentinel-2 bands, composites, indices: terralite.data.scene), which predict derives
    "input": "terralite.input",
    "class_names": "terralite.class_names",  # JSON list, class id i + 1 ↔ name i
}


def read_metadata_props(path: str | Path) -> dict[str, str]:
    """All ``metadata_props`` of an ONNX file (its weights are not loaded)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def onnx_metadata(spec: dict, normalisation: dict, class_names: Sequence[str]) -> dict[str, str]:
    """The ``metadata_props`` entries that make an ONNX file self-describing for :func:`load_predictor`."""
    values = {"spec": spec, "input": normalisation, "class_names": list(class_names)}
    # A model trained without a normalisation record gets none: predict then asks for --mean/--std.
    return {ONNX_METADATA_KEYS[k]: json.dumps(v, sort_keys=True) for k, v in values.items() if v is not None}


def write_onnx_metadata(path: str | Path, metadata: dict[str, str]) -> None:
    """Set ``metadata`` entries in an ONNX file's ``metadata_props`` (others kept); the file is rewritten atomically."""
    import onnx

    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    props.update(metadata)
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))


def read_onnx_metadata(custom: dict[str, str], path: Path) -> dict:
    """Parse the TerraLite entries of an ONNX file's metadata map (``{}`` for files from elsewhere)."""
    out = {}
    for key, prop in ONNX_METADATA_KEYS.items():
        if prop in custom:
            try:
                out[key] = json.loads(custom[prop])
            except json.JSONDecodeError:
                raise TerraLiteError(f"ONNX file {path}: metadata {prop!r} is not valid JSON; re-export it with terralite export") from None
    return out
