"""Training throughput: images per second, and the share of step time spent waiting for data.

A step is timed from asking the loader for a batch to the end of the optimizer step (synchronised on CUDA);
the wait is the part until the batch is on the device. The data path is the training one (GeoTIFF reads,
normalisation, random crops, the engine's loader with its workers, pinned memory and prefetching).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import torch

from terralite.engine.evaluate import autocast_context, resolve_amp
from terralite.engine.loader import build_loader, default_workers
from terralite.errors import TerraLiteError


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_throughput(
    model: str,
    data,
    crop: int = 512,
    batch: int = 8,
    steps: int = 50,
    warmup: int = 5,
    workers: int | None = None,
    device: str = "auto",
    amp: str = "auto",
    channels_last: bool = True,
    split: str = "train",
    seed: int = 0,
    out: str | Path | None = None,
) -> dict:
    """Train ``model`` (baseline name, spec JSON or checkpoint) for ``warmup`` + ``steps`` steps and time them.

    ``data``: a :class:`~terralite.data.registry.DataConfig`, a dataset root or a data YAML file. ``out``: also
    write the result as JSON there (atomically; its folder is checked before anything is measured).
    """
    from terralite.data.registry import DataConfig, build_dataset, describe_data
    from terralite.data.transforms import train_transform
    from terralite.device import device_name, resolve_device
    from terralite.engine.train import split_outputs
    from terralite.losses import build_loss
    from terralite.models import build_model, describe, resolve_model_reference
    from terralite.versions import library_versions

    if steps < 1 or warmup < 0 or batch < 1:
        raise TerraLiteError(f"need steps >= 1, warmup >= 0 and batch >= 1 (got steps={steps}, warmup={warmup}, batch={batch})")
    if out is not None:
        from terralite.atomic import ensure_parent

        ensure_parent(out)
    dev = resolve_device(device)
    amp = resolve_amp(amp, dev)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = True
    generator = torch.Generator()
    data_cfg = DataConfig.from_value(data)
    data_label = str(data) if isinstance(data, (str, Path)) else describe_data(data_cfg)
    dataset = build_dataset(data_cfg, split, transform=train_transform(crop or None, flip_rotate=False, generator=generator))
    spec, ckpt = resolve_model_reference(model, dataset.num_bands, dataset.num_classes)
    net = build_model(spec)
    if ckpt is not None:
        from terralite.models import load_weights

        load_weights(net, ckpt["state_dict"], f"checkpoint {model}")
    net.to(dev).train()
    use_cl = channels_last and dev.type == "cuda"
    if use_cl:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=1e-6)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp == "fp16")
    criterion = build_loss("ce", dataset.ignore_index).to(dev)
    num_workers = default_workers(dev) if workers is None else workers
    loader = build_loader(dataset, batch, shuffle=True, seed=seed, device=dev, num_workers=num_workers,
                          drop_last=len(dataset) >= batch, generator=generator)
    if len(loader) == 0:
        raise TerraLiteError(f"the {split} split of {data_label} has {len(dataset)} tiles, fewer than batch {batch}")

    epoch = 0
    iterator = iter(loader)
    waits, totals = [], []
    for step in range(warmup + steps):
        started = time.perf_counter()
        try:
            images, labels = next(iterator)
        except StopIteration:  # a new epoch; with persistent workers this is cheap, and it is part of the wait
            epoch += 1
            loader.sampler.set_epoch(epoch)
            iterator = iter(loader)
            images, labels = next(iterator)
        images = images.to(dev, non_blocking=True)
        labels = labels.to(dev, non_blocking=True)
        if use_cl:
            images = images.contiguous(memory_format=torch.channels_last)
        _sync(dev)
        arrived = time.perf_counter()
        with autocast_context(dev, amp):
            logits, _ = split_outputs(net(images))
            loss = criterion(logits, labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        _sync(dev)
        done = time.perf_counter()
        if step >= warmup:
            waits.append(arrived - started)
            totals.append(done - started)
    total = sum(totals)
    result = {
        "model": describe(spec),
        "data": data_label,
        "tiles": len(dataset),
        "crop": crop,
        "batch": batch,
        "steps": steps,
        "warmup": warmup,
        "workers": num_workers,
        "device": device_name(dev),
        "amp": amp,
        "channels_last": use_cl,
        "images_per_s": round(steps * batch / total, 3),
        "step_ms_mean": round(1000 * total / steps, 3),
        "data_wait_ms_mean": round(1000 * sum(waits) / steps, 3),
        "data_wait_share": round(sum(waits) / total, 4),
        "versions": library_versions(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if out is not None:
        from terralite.atomic import write_text_atomic

        write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    return result
