"""``terralite bench``: benchmark rows of several models under one set of conditions, appended to a JSONL file.

:func:`bench_models` checks the conditions and the output first (before minutes of timing), measures each
model with :func:`terralite.benchmark.bench.benchmark_rows` and appends its rows to ``out`` — a JSONL file,
or a folder in which the file is named after the conditions
(:func:`terralite.benchmark.rows.conditions_file_name`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

from terralite.errors import TerraLiteError

def bench_output(out: str | Path) -> Path:
    """The file or folder rows go to; a trailing slash names a folder, created when its parent exists."""
    from terralite.atomic import ensure_parent

    text = str(out)
    path = Path(text)
    if text.endswith(("/", os.sep)) and not path.is_dir():
        ensure_parent(path).mkdir()
    return ensure_parent(path)


def bench_models(
    models: Sequence[str],
    out: str | Path,
    *,
    size: int = 1024,
    in_channels: int | None = None,
    runtime: str = "torch",
    device: str = "cpu",
    precision: str | None = None,
    tta: Sequence[str] = ("none",),
    batch_size: int = 1,
    warmup: int = 10,
    iters: int = 300,
    channels_last: bool = False,
    torch_compile: bool = False,
    cuda_graphs: bool = False,
    threads: int | None = None,
    data: str | None = None,
    split: str = "test",
    on_rows: Callable[[str, list[dict], Path], None] | None = None,
) -> dict[str, Path]:
    """Benchmark every model of ``models`` and append its rows to ``out``; returns model → file written.

    ``tta`` modes are those of :data:`terralite.benchmark.tta.BENCH_TTA_MODES`. ``threads`` sets torch's CPU
    threads (and ONNX Runtime's intra-op threads). With ``data`` (a dataset root) checkpoints are also
    evaluated on ``split``. ``on_rows(model, rows, file)`` is called after each model, for progress.
    """
    from terralite.benchmark.bench import benchmark_rows
    from terralite.benchmark.rows import conditions_file_name, write_rows
    from terralite.benchmark.tta import check_bench_tta

    modes = [check_bench_tta(mode) for mode in tta]
    if not modes:
        raise TerraLiteError("--tta names no mode; pass e.g. --tta none or --tta none,hflip")
    if batch_size < 1:
        raise TerraLiteError(f"--batch-size must be at least 1, got {batch_size}")
    out = bench_output(out)  # fail before minutes of timing, not after
    flags = {"channels_last": channels_last, "compile": torch_compile, "cuda_graphs": cuda_graphs}
    options: dict = {}
    if runtime == "torch":
        options = flags
    elif any(flags.values()):
        raise TerraLiteError(f"--channels-last, --compile and --cuda-graphs are torch options; drop them for --runtime {runtime}")
    if threads:
        import torch

        torch.set_num_threads(threads)
        if runtime == "onnxruntime":
            options["threads"] = threads
    written: dict[str, Path] = {}
    for ref in models:
        rows = benchmark_rows(ref, size=size, in_channels=in_channels, data=data, split=split, runtime=runtime,
                              device=device, precision=precision, tta=modes, warmup=warmup, iters=iters,
                              batch=batch_size, runner_options=options)
        # in a folder, the file is named after the conditions (an ONNX file's precision is known from its rows)
        target = out / conditions_file_name(device, runtime, rows[0]["precision"], size, batch_size) if out.is_dir() else out
        write_rows(target, rows)
        written[ref] = target
        if on_rows is not None:
            on_rows(ref, rows, target)
    return written
