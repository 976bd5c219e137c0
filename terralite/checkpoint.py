"""TerraLite checkpoints: plain tensors and JSON-able values only, written atomically.

Layout: ``{format, spec, state_dict, optimizer, scheduler, scaler, epoch, config, metrics, versions}``
(training state is optional). Loading uses ``torch.load(weights_only=True)``: no pickled code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from terralite.atomic import atomic_path
from terralite.errors import TerraLiteError
from terralite.versions import library_versions

CHECKPOINT_FORMAT = "terralite-checkpoint-v1"


def save_checkpoint(path: str | Path, spec: dict, state_dict: dict, **extra: Any) -> Path:
    """Write a checkpoint atomically; ``extra`` holds optimizer/scheduler/scaler state, epoch, config, metrics."""
    payload = {"format": CHECKPOINT_FORMAT, "spec": spec, "state_dict": state_dict, "versions": library_versions()}
    payload.update(extra)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise TerraLiteError(f"checkpoint {path} does not exist; pass the path of a TerraLite .pt file (a run folder's last.pt or best.pt)")
    if path.stat().st_size == 0:
        raise TerraLiteError(f"checkpoint {path} is empty (0 bytes): an interrupted copy or download? Use the run folder's "
                             "last.pt or best.pt")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):  # not a pickle at all: damaged or another kind of file
            raise TerraLiteError(f"{path} is not a readable TerraLite checkpoint (damaged, or not a checkpoint at all)") from None
        # it needs classes outside torch's safe list; torch's own message advises switching the protection off
        raise TerraLiteError(f"{path} was refused: it holds Python objects that only a full unpickling could load, and "
                             "loading it that way could run arbitrary code; TerraLite checkpoints hold only tensors and "
                             "plain values (save one with terralite train, or re-save the weights as a state dict)") from None
    except Exception as exc:  # torch raises several types for foreign or damaged files
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise TerraLiteError(f"{path} is not a readable TerraLite checkpoint ({type(exc).__name__}{': ' + detail if detail else ''})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise TerraLiteError(f"{path} is not a TerraLite checkpoint (no '{CHECKPOINT_FORMAT}' marker); train or export one with terralite")
    return payload
