"""Benchmark rows for models under given conditions: profile once, time every TTA mode, optionally evaluate.

:func:`benchmark_rows` is what ``terralite bench`` runs; :func:`benchmark_model` does the same for a
model already in memory (e.g. before/after compression) and :func:`benchmark_onnx_file` for an existing
ONNX file (e.g. an int8 graph from ``terralite quantize``), timed with ONNX Runtime.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import tempfile
from pathlib import Path
from typing import Sequence

from torch import nn

from terralite.benchmark.profiler import profile_model
from terralite.benchmark.rows import ROW_FIELDS
from terralite.benchmark.runners import RUNNERS, build_runner
from terralite.benchmark.tta import check_bench_tta, eval_tta_mode
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
    :func:`terralite.benchmark.profiler.profile_model` result.
    """
    from terralite.device import device_name, resolve_device
    from terralite.models import describe, spec_hash

    modes = [check_bench_tta(m) for m in tta]
    _check_size(size)
    dev = resolve_device(device)
    RUNNERS.get(runtime).check(dev, precision)  # unusable runtimes fail now, not after profiling
    if precision == "int8":
        raise TerraLiteError("int8 timing needs a quantised ONNX file (terralite quantize, then bench MODEL.int8.onnx); "
                             "a PyTorch network is timed in fp32, fp16 or bf16")
    in_channels = spec.get("in_channels", 3)
    model = model.eval()
    profile = profile or profile_model(model, size, in_channels)
    options = dict(runner_options or {})
    with contextlib.ExitStack() as stack:
        if runtime in ("onnxruntime", "tensorrt") and "onnx_dir" not in options:
            # one folder of ONNX exports per model: TTA modes with the same network batch share an export
            options["onnx_dir"] = stack.enter_context(tempfile.TemporaryDirectory(prefix="terralite-bench-"))
        rows, mious = [], {}
        build = functools.partial(build_runner, runtime, model, size=size, in_channels=in_channels, batch=batch,
                                  device=dev, precision=precision, **options)
        for mode, (stats, label) in zip(modes, _measure_modes(build, modes, dev, warmup, iters)):
            if dataset is not None and eval_tta_mode(mode) not in mious:
                from terralite.engine.evaluate import evaluate

                mious[eval_tta_mode(mode)] = evaluate(model, dataset, tta=eval_tta_mode(mode), device=dev,
                                                      num_classes=spec.get("num_classes"))["miou"]
            rows.append(_row(describe(spec), spec_hash(spec), profile, size, batch, device_name(dev), label, precision,
                             mode, stats, mious.get(eval_tta_mode(mode))))
    return rows


def benchmark_onnx_file(
    path: str | Path,
    *,
    size: int = 1024,
    in_channels: int | None = None,
    runtime: str = "onnxruntime",
    device: str = "cpu",
    precision: str | None = None,
    tta: Sequence[str] = ("none",),
    warmup: int = 10,
    iters: int = 300,
    batch: int = 1,
    runner_options: dict | None = None,
    profile: dict | None = None,
) -> list[dict]:
    """One row per TTA mode for the ONNX file ``path``, timed by ONNX Runtime as the file stands.

    ``precision`` defaults to the file's (``int8`` for a quantised graph, else ``fp32``). Parameters and
    GMACs: ``profile`` if given (e.g. of the module the file was exported from); else, for a file carrying a
    TerraLite spec (``terralite export`` / ``quantize`` write one), :func:`~terralite.benchmark.profiler.profile_model`
    of the network the spec builds; else parameters are counted from the file's initializers
    (:func:`~terralite.benchmark.onnx_file.initializer_params`) and ``gmacs``/``flop_counter`` are None. ``miou`` is None.
    """
    from terralite.benchmark.onnx_file import read_onnx_file
    from terralite.device import device_name, resolve_device

    modes = [check_bench_tta(m) for m in tta]
    _check_size(size)
    info = read_onnx_file(path)
    cls = RUNNERS.get(runtime)
    if not cls.times_onnx_files:
        raise TerraLiteError(f"{path} is an ONNX file: time it with --runtime onnxruntime (runtime {runtime!r} times PyTorch networks)")
    precision = precision or info.precision
    dev = resolve_device(device)
    cls.check(dev, precision)
    in_channels = info.channels(in_channels)
    if profile is None:
        profile = onnx_profile(info, size, in_channels)
    if info.spec:
        from terralite.models import describe

        name = describe(info.spec)
    else:
        name = Path(path).name.removesuffix(".onnx")
    fingerprint = info.fingerprint()
    build = functools.partial(build_runner, runtime, None, onnx_path=path, size=size, in_channels=in_channels,
                              batch=batch, device=dev, precision=precision, **(runner_options or {}))
    return [_row(name, fingerprint, profile, size, batch, device_name(dev), label, precision, mode, stats, None)
            for mode, (stats, label) in zip(modes, _measure_modes(build, modes, dev, warmup, iters))]


def _measure_modes(build, modes: Sequence[str], device, warmup: int, iters: int) -> list[tuple]:
    """``(stats, runtime label)`` per TTA mode; ``build(tta=mode)`` makes a runner. On a CPU the modes' runners are timed side by side
    (:func:`~terralite.benchmark.runners.base.measure_side_by_side`: a drifting machine moves every mode alike,
    so TTA/none ratios hold); on a GPU one after the other, each runner freed before the next is built
    (sessions, engines and CUDA graphs hold device memory)."""
    from terralite.benchmark.runners.base import measure_side_by_side

    if device.type == "cpu" and len(modes) > 1:
        runners = [build(tta=mode) for mode in modes]
        return [(stats, runner.label) for runner, stats in zip(runners, measure_side_by_side(runners, warmup, iters))]
    measured = []
    for mode in modes:
        runner = build(tta=mode)
        measured.append((runner.measure(warmup, iters), runner.label))
        del runner  # free its session/engine/copy before the next one is built
    return measured


def onnx_profile(info, size: int, in_channels: int) -> dict:
    """Parameters and GMACs of an ONNX file (see :func:`benchmark_onnx_file`): from its spec's network, else
    parameters from its initializers and no GMACs."""
    if info.spec:
        from terralite.models import build_model, with_io

        return profile_model(build_model(with_io(info.spec, in_channels)), size, in_channels)
    return {"params_m": info.params / 1e6, "gmacs": None, "flop_counter": None}


def _check_size(size: int) -> None:
    if size <= 0:
        raise TerraLiteError(f"input size {size} must be a positive multiple of 32 (e.g. --size 1024)")
    if size % 32:
        raise TerraLiteError(f"input size {size} is not divisible by 32; every network needs H and W divisible by 32")


def _row(model: str, fingerprint: str, profile: dict, size: int, batch: int, device: str, runtime: str, precision: str,
         tta: str, stats, miou: float | None) -> dict:
    """One benchmark row (the layout of :data:`terralite.benchmark.rows.ROW_FIELDS`)."""
    from terralite.versions import library_versions

    row = {
        "model": model, "spec_hash": fingerprint, "params_m": profile["params_m"], "gmacs": profile["gmacs"],
        "flop_counter": profile["flop_counter"], "gmacs_flagged": profile.get("flagged"), "input_size": size, "batch": batch,
        "device": device, "runtime": runtime, "precision": precision, "tta": tta,
        "latency_ms_mean": round(stats.latency_ms_mean, 4), "latency_ms_median": round(stats.latency_ms_median, 4),
        "latency_ms_p10": round(stats.latency_ms_p10, 4), "latency_ms_p90": round(stats.latency_ms_p90, 4),
        "fps": round(stats.fps, 3), "warmup": stats.warmup, "iters": stats.iters, "loadavg": stats.loadavg, "cpus": stats.cpus,
        "other_load": stats.other_load, "peak_mem_mb": round(stats.peak_mem_mb, 1), "miou": miou,
        "versions": library_versions(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    assert tuple(row) == ROW_FIELDS  # the row layout is defined once, in terralite.benchmark.rows
    return row


def benchmark_rows(
    model_ref: str,
    *,
    size: int = 1024,
    in_channels: int | None = None,
    data: str | Path | None = None,
    split: str = "test",
    **conditions,
) -> list[dict]:
    """Rows for the model ``model_ref`` names (baseline name, spec/arch JSON, checkpoint or ``.onnx`` file).

    ``conditions`` are those of :func:`benchmark_model` (runtime, device, precision, tta, warmup, iters,
    batch, runner_options); ``precision`` None means fp32, or an ONNX file's own. With ``data`` (an
    OpenEarthMap root) and a checkpoint, ``miou`` is evaluated on ``split`` with the checkpoint's band
    selection and normalisation; without a checkpoint there are no trained weights to evaluate and
    ``data`` is refused. ONNX files are timed by :func:`benchmark_onnx_file`.
    """
    from terralite.models import load_model

    if str(model_ref).lower().endswith(".onnx"):
        if data is not None:
            raise TerraLiteError(f"--data: bench evaluates mIoU of checkpoints, not of ONNX files like {model_ref}; "
                                 "bench the checkpoint, or compare ONNX outputs with terralite quantize's agreement report")
        return benchmark_onnx_file(model_ref, size=size, in_channels=in_channels, **conditions)
    conditions["precision"] = conditions.get("precision") or "fp32"

    model, spec, ckpt = load_model(model_ref, in_channels=in_channels)
    dataset = None
    if data is not None:
        if ckpt is None:
            raise TerraLiteError(f"--data needs a checkpoint to evaluate, but {model_ref!r} is not one (untrained weights have no meaningful mIoU)")
        from terralite.engine.evaluate import dataset_for_checkpoint

        dataset = dataset_for_checkpoint(ckpt, data, split)
    return benchmark_model(model, spec, size=size, dataset=dataset, **conditions)
