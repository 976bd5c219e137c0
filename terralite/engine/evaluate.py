"""Evaluation: a confusion matrix over a whole split, with optional TTA and sliding windows.

Under ``torchrun`` each rank evaluates its share of the tiles (rank ``r`` takes every ``world``-th tile,
nothing duplicated) and the confusion matrices are summed, so every rank returns the metrics of the split.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from terralite.data.classes import CLASS_NAMES, IGNORE_INDEX
from terralite.engine.distributed import all_reduce_sum, init_distributed, rank_and_world, shutdown_distributed
from terralite.engine.loader import build_loader
from terralite.engine.sliding import sliding_window_logits
from terralite.errors import TerraLiteError
from terralite.metrics import ConfusionMatrix, json_safe
from terralite.tta import TTA_MODES, check_tta_mode, tta_forward

DEFAULT_WINDOW = 1024  # whole OpenEarthMap tiles; larger inputs are evaluated in windows of this size


def autocast_context(device: torch.device, amp: str):
    """``torch.autocast`` for ``amp`` in {fp16, bf16}; a null context for ``none``."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[amp]
    return torch.autocast(device_type=device.type, dtype=dtype)


def resolve_amp(amp: str, device: torch.device) -> str:
    """``auto`` → bf16 on CUDA devices that support it, else fp16; none on the CPU."""
    if amp not in ("auto", "fp16", "bf16", "none"):
        raise TerraLiteError(f"unknown AMP mode {amp!r}; valid: auto, fp16, bf16, none")
    if amp == "auto":
        if device.type != "cuda":
            return "none"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if amp == "fp16" and device.type != "cuda":
        raise TerraLiteError("--amp fp16 needs a CUDA device; use --amp bf16 or --amp none on the CPU")
    return amp


def class_names(num_classes: int, dataset: Dataset | None = None) -> list[str]:
    """The dataset's class names when it has them for ``num_classes`` classes, else OpenEarthMap's or ``class_<i>``."""
    names = getattr(dataset, "class_names", None)
    if names is not None and len(names) == num_classes:
        return list(names)
    return list(CLASS_NAMES) if num_classes == len(CLASS_NAMES) else [f"class_{i}" for i in range(num_classes)]


def _tile_names(dataset: Dataset, indices: list[int]) -> list[str]:
    names = getattr(dataset, "names", None)
    if names is not None:
        return [Path(names[i]).stem for i in indices]
    samples = getattr(dataset, "samples", None)
    if samples is None:
        return [f"tile_{i:05d}" for i in indices]
    return [Path(samples[i][0]).stem for i in indices]


def _save_prediction(path: Path, pred: np.ndarray) -> None:
    from PIL import Image

    from terralite.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(pred.astype(np.uint8)).save(tmp)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    tta: str = "none",
    device: torch.device | str = "cpu",
    batch_size: int = 1,
    *,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    window: int = DEFAULT_WINDOW,
    overlap: float = 0.25,
    amp: str = "none",
    channels_last: bool = False,
    save_predictions: str | Path | None = None,
    num_workers: int | None = None,
) -> dict:
    """Metrics of ``model`` over every tile of ``dataset`` (``(image, label)`` pairs).

    Returns ``{"miou", "iou": [...], "f1": [...], "mf1", "precision", "recall", "pixel_accuracy", "pixels",
    "classes": [...names], "tta", "forward_passes", "tiles", "seconds"}``. ``tta`` is a mode of
    :mod:`terralite.tta`; tiles with a side above ``window`` are evaluated in overlapping windows.
    ``save_predictions``: a folder that receives one PNG of predicted class ids (0..K-1) per tile, named after
    the tile, at the label's size. The model is put in eval mode. ``ignore_index`` defaults to the dataset's
    ``ignore_index`` attribute (255 without one); class names come from its ``class_names``.
    """
    check_tta_mode(tta)
    if ignore_index is None:
        ignore_index = getattr(dataset, "ignore_index", IGNORE_INDEX)
    device = torch.device(device)
    amp = resolve_amp(amp, device)
    model = model.to(device).eval()
    if channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    rank, world = rank_and_world()
    indices = list(range(rank, len(dataset), world))
    loader = build_loader(Subset(dataset, indices), batch_size, shuffle=False, device=device, num_workers=num_workers)
    names = _tile_names(dataset, indices)
    out_dir = Path(save_predictions) if save_predictions else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    cm = None
    started = time.perf_counter()
    position = 0

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast_context(device, amp):
            return tta_forward(model, x, tta).float()

    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        if channels_last and device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
        logits = sliding_window_logits(forward, images, window, overlap)
        if cm is None:
            classes = num_classes or logits.shape[1]
            cm = ConfusionMatrix(classes, ignore_index, device=device)
        if logits.shape[-2:] != labels.shape[-2:]:
            raise TerraLiteError(f"model output {tuple(logits.shape[-2:])} does not match the label size {tuple(labels.shape[-2:])}")
        pred = logits.argmax(dim=1)
        cm.update(pred, labels)
        if out_dir is not None:
            for p in pred.cpu().numpy():
                _save_prediction(out_dir / f"{names[position]}.png", p)
                position += 1
    if cm is None:  # this rank had no tiles (more ranks than tiles)
        cm = ConfusionMatrix(num_classes or _num_classes_of(model), ignore_index, device=device)
    cm.all_reduce()
    tiles = all_reduce_sum(torch.tensor([len(indices)], device=device))
    result = cm.compute()
    result.update({
        "classes": class_names(cm.num_classes, dataset),
        "tta": tta,
        "forward_passes": TTA_MODES[tta],
        "tiles": int(tiles.item()),
        "seconds": round(time.perf_counter() - started, 3),
    })
    return result


def _num_classes_of(model: nn.Module) -> int:
    for module in reversed(list(model.modules())):
        if isinstance(module, nn.Conv2d):
            return module.out_channels
    raise TerraLiteError("cannot tell the model's number of classes; pass num_classes=")


def dataset_for_checkpoint(ckpt: dict, data, split: str, skip_missing: bool = False) -> Dataset:
    """The split read with the band selection and normalisation the checkpoint's model was trained with.

    ``data`` is a :class:`~terralite.data.registry.DataConfig`, a dataset root or a data YAML file (see
    :meth:`DataConfig.from_value`); ``skip_missing=True`` turns on ``data.skip_missing``. A checkpoint without an
    ``input`` record is normalised with the split's own (cached) statistics. Raises a one-line TerraLiteError
    when the data's band count differs from the model's input channels.
    """
    import dataclasses

    from terralite.data.registry import DataConfig, build_dataset

    cfg = DataConfig.from_value(data)
    if skip_missing and not cfg.skip_missing:
        cfg = dataclasses.replace(cfg, skip_missing=True)
    dataset = build_dataset(cfg, split, input_record=ckpt.get("input") or None)
    check_band_count(dataset.num_bands, ckpt["spec"], f"{_data_label(data)} ({split} split)")
    return dataset


def _data_label(data) -> str:
    """How results name the data: the root or file as given, or the config's one-line description."""
    import os

    if isinstance(data, (str, os.PathLike)):
        return str(data)
    from terralite.data.registry import describe_data

    return describe_data(data)


def check_band_count(num_bands: int, spec: dict, where: str) -> None:
    expected = spec.get("in_channels")
    if expected is not None and expected != num_bands:
        raise TerraLiteError(
            f"the model takes {expected} input band(s) but {where} has {num_bands}; use data with {expected} bands "
            f"or train a model for {num_bands} bands")


def evaluate_checkpoint(
    checkpoint: str | Path,
    data,
    split: str = "test",
    tta: str = "none",
    device: str = "auto",
    json_out: str | Path | None = None,
    save_predictions: str | Path | None = None,
    window: int = DEFAULT_WINDOW,
    overlap: float = 0.25,
    batch_size: int = 1,
    amp: str = "none",
    skip_missing: bool = False,
) -> dict:
    """Evaluate a TerraLite checkpoint on a split; optionally write the metrics JSON (atomically).

    ``data``: a :class:`~terralite.data.registry.DataConfig`, a dataset root or a data YAML file.
    """
    from terralite.atomic import ensure_parent, write_text_atomic
    from terralite.checkpoint import load_checkpoint
    from terralite.device import device_name, resolve_device
    from terralite.models import build_model, describe

    check_tta_mode(tta)
    if json_out:
        ensure_parent(json_out)
    ckpt = load_checkpoint(checkpoint)
    dataset = dataset_for_checkpoint(ckpt, data, split, skip_missing)
    model = build_model(ckpt["spec"])
    from terralite.models import load_weights

    load_weights(model, ckpt["state_dict"], f"checkpoint {checkpoint}")
    ctx, dev = init_distributed(resolve_device(device))  # under torchrun: each rank takes a share of the tiles
    try:
        result = evaluate(model, dataset, tta, dev, batch_size, num_classes=ckpt["spec"].get("num_classes"), window=window,
                          overlap=overlap, amp=amp, save_predictions=save_predictions)
    finally:
        if ctx.owns_group:
            shutdown_distributed()
    result = {"checkpoint": str(checkpoint), "model": describe(ckpt["spec"]), "data": _data_label(data), "split": split,
              "device": device_name(dev), "processes": ctx.world_size, "amp": resolve_amp(amp, dev), **result}
    if json_out and ctx.is_main:
        write_text_atomic(json_out, json.dumps(json_safe(result), indent=2) + "\n")
    return result
