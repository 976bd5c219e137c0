"""Benchmark rows for models under given conditions: profile once, time every TTA mode, optionally evaluate.

:func:`benchmark_rows` is what ``terralite bench`` runs; :func:`benchmark_model` does the same for a
model already in memory (e.g. before/after compression).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Sequence

from torch import nn

from benchmark.profiler import profile_model
from benchmark.rows import ROW_FIELDS
from benchmark.runners import build_runner
from benchmark.tta import check_bench_tta, eval_tta_mode
from terralite.errors import TerraLiteError


def benchmark_model(
    model: nn.Module,
    spec: dict,
    *,
    size: int = 1024,
    runtime: str = "torch",
    device: str = "cpu",
    precision: str = "fp32",
    tta: Sequence[str] = ("none",),
    warmup: int = 10,
    iters: int = 300,
    batch: int = 1,
    dataset=None,
    runner_options: dict | None = None,
    profile: dict | None = None,
) -> list[dict]:
    """One row per TTA mode for ``model`` (built from ``spec``), timed on ``runtime``/``device``.

    ``dataset`` (a :class:`torch.utils.data.Dataset` of ``(image, label)``) fills ``miou`` by evaluating
    the model in eager PyTorch with the row's TTA (``hflip-batched`` gives the logits of ``hflip``), so the
    figure is the network's, whatever runtime was timed. ``profile`` reuses an earlier
    :func:`benchmark.profiler.profile_model` result.
    """
    from terralite.device import device_name, resolve_device
    from terralite.models import describe, spec_hash
    from terralite.versions import library_versions

    modes = [check_bench_tta(m) for m in tta]
    if size % 32:
        raise TerraLiteError(f"input size {size} is not divisible by 32; every network needs H and W divisible by 32")
    dev = resolve_device(device)
    in_channels = spec.get("in_channels", 3)
    model = model.eval()
    profile = profile or profile_model(model, size, in_channels)
    versions = library_versions()
    options = dict(runner_options or {})
    exports = None
    if runtime in ("onnxruntime", "tensorrt") and "onnx_dir" not in options:
        # one folder of ONNX exports per model: TTA modes with the same network batch share an export
        exports = tempfile.TemporaryDirectory(prefix="terralite-bench-")
        options["onnx_dir"] = exports.name
    rows = []
    for mode in modes:
        runner = build_runner(runtime, model, size=size, in_channels=in_channels, batch=batch, device=dev,
                              precision=precision, tta=mode, **options)
        stats = runner.measure(warmup, iters)
        miou = None
        if dataset is not None:
            from terralite.engine.evaluate import evaluate

            miou = evaluate(model.float(), dataset, tta=eval_tta_mode(mode), device=dev, num_classes=spec.get("num_classes"))["miou"]
        row = {
            "model": describe(spec), "spec_hash": spec_hash(spec), "params_m": profile["params_m"],
            "gmacs": profile["gmacs"], "flop_counter": profile["flop_counter"], "input_size": size,
            "batch": batch, "device": device_name(dev), "runtime": runner.label, "precision": precision, "tta": mode,
            "latency_ms_mean": round(stats.latency_ms_mean, 4), "latency_ms_median": round(stats.latency_ms_median, 4),
            "latency_ms_p90": round(stats.latency_ms_p90, 4), "fps": round(stats.fps, 3),
            "peak_mem_mb": round(stats.peak_mem_mb, 1), "miou": miou, "versions": versions,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        assert tuple(row) == ROW_FIELDS  # the row layout is defined once, in benchmark.rows
        rows.append(row)
        del runner
    if exports is not None:
        exports.cleanup()
    return rows


def benchmark_rows(
    model_ref: str,
    *,
    size: int = 1024,
    in_channels: int | None = None,
    data: str | Path | None = None,
    split: str = "test",
    **conditions,
) -> list[dict]:
    """Rows for the model ``model_ref`` names (baseline name, spec/arch JSON or checkpoint).

    ``conditions`` are those of :func:`benchmark_model` (runtime, device, precision, tta, warmup, iters,
    batch, runner_options). With ``data`` (an OpenEarthMap root) and a checkpoint, ``miou`` is evaluated
    on ``split`` with the checkpoint's band selection and normalisation; without a checkpoint there are
    no trained weights to evaluate and ``data`` is refused.
    """
    from terralite.models import load_model

    model, spec, ckpt = load_model(model_ref, in_channels=in_channels)
    dataset = None
    if data is not None:
        if ckpt is None:
            raise TerraLiteError(f"--data needs a checkpoint to evaluate, but {model_ref!r} is not one (untrained weights have no meaningful mIoU)")
        from terralite.engine.evaluate import dataset_for_checkpoint

        dataset = dataset_for_checkpoint(ckpt, data, split)
    return benchmark_model(model, spec, size=size, dataset=dataset, **conditions)
