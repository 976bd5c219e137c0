"""The runner interface: one network, one runtime, one set of conditions; ``measure()`` times it.

A runner is built for fixed conditions — input ``batch x in_channels x size x size``, device, precision
and TTA mode — so that everything a runtime prepares (export, engine build, compilation, CUDA graph
capture) happens once, outside the timed region. Subclasses implement ``_forward(x)``: one network call
on a tensor on the runner's device (for ``hflip-batched`` the batch is doubled; the other modes call it
once per view). The base class wraps it in the TTA views (flips and merge included in the timed call) and
times it: with CUDA events recorded on the current stream and one synchronisation at the end on a GPU,
with ``time.perf_counter`` on a CPU.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from terralite.benchmark.memory import PeakMemory
from terralite.benchmark.runners.other_load import OtherLoad
from terralite.benchmark.tta import BENCH_TTA_MODES, check_bench_tta, timed_tta_forward
from terralite.cpu_allocator import keep_freed_memory
from terralite.errors import TerraLiteError

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class LatencyStats:
    """Per-call latency (ms) of the timed iterations, FPS = 1000 / median x batch, peak memory (MB), the
    machine's 1-minute load average (the larger of before and after) with its processor count, and the
    processors' worth of work other processes did during the timed calls (:mod:`.other_load`)."""

    latency_ms_mean: float
    latency_ms_median: float
    latency_ms_p10: float
    latency_ms_p90: float
    latency_ms_min: float
    latency_ms_std: float
    fps: float
    peak_mem_mb: float
    peak_mem_method: str
    warmup: int
    iters: int
    loadavg: float | None = None
    cpus: int | None = None
    other_load: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class Runner:
    """Base class of the per-runtime runners (``TorchRunner``, ``OnnxRuntimeRunner``, ``TensorRTRunner``)."""

    name = ""
    precisions: tuple[str, ...] = ("fp32",)
    times_onnx_files = False  # True: built with model=None and onnx_path=FILE, it times an existing ONNX file

    def __init__(
        self,
        model: nn.Module | None,
        *,
        size: int,
        in_channels: int,
        batch: int = 1,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        tta: str = "none",
    ):
        self.device = torch.device(device)
        self.check(self.device, precision)
        if self.device.type == "cpu":  # large maps reuse freed memory instead of new pages every call
            keep_freed_memory()
        if model is None and not self.times_onnx_files:
            raise TerraLiteError(f"runtime {self.name!r} times a PyTorch network; time ONNX files with --runtime onnxruntime")
        self.model = model.eval() if model is not None else None
        self.size = size
        self.in_channels = in_channels
        self.batch = batch
        self.precision = precision
        self.tta = check_bench_tta(tta)
        self.network_batch = batch * BENCH_TTA_MODES[tta]

    @classmethod
    def check(cls, device: torch.device, precision: str) -> None:
        """Raise a :class:`TerraLiteError` now if this runtime cannot run on ``device`` in ``precision``
        (called before minutes of profiling or export; subclasses add their own requirements)."""
        if precision not in cls.precisions:
            raise TerraLiteError(f"runtime {cls.name!r} supports precision {', '.join(cls.precisions)}, not {precision!r}")

    @property
    def label(self) -> str:
        """The ``runtime`` field of a benchmark row (options that change speed are part of it)."""
        return self.name

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def make_input(self, seed: int = 0) -> torch.Tensor:
        """A fixed random input on the runner's device, in the dtype its network takes."""
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(self.batch, self.in_channels, self.size, self.size, generator=g)
        return x.to(self.device, self.input_dtype)

    @property
    def input_dtype(self) -> torch.dtype:
        return torch.float32

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Summed TTA logits ``(batch, classes, size, size)`` for ``x`` — the timed call."""
        return timed_tta_forward(self._forward, x, self.tta)

    def _memory_meter(self) -> PeakMemory:
        return PeakMemory(self.device)

    @torch.no_grad()
    def measure(self, warmup: int = 10, iters: int = 300) -> LatencyStats:
        """Run ``warmup`` untimed then ``iters`` timed calls; return their statistics."""
        _check_counts(warmup, iters)
        x = self.make_input()
        load_before = _loadavg()
        meter = self._memory_meter()
        meter.start()
        for _ in range(warmup):
            self(x)
        others = OtherLoad()
        others.start()
        times = self._timed(x, iters)
        other_load = others.stop()
        peak = meter.stop()
        return self._stats(times, peak, meter.method, warmup, [load_before, _loadavg()], other_load)

    def _stats(self, times: list[float], peak: float, method: str, warmup: int, loads: list,
               other_load: float | None) -> LatencyStats:
        loads = [v for v in loads if v is not None]
        median = statistics.median(times)
        return LatencyStats(
            latency_ms_mean=statistics.fmean(times),
            latency_ms_median=median,
            latency_ms_p10=float(np.percentile(times, 10)),
            latency_ms_p90=float(np.percentile(times, 90)),
            latency_ms_min=min(times),
            latency_ms_std=statistics.pstdev(times),
            fps=1000.0 / median * self.batch,
            peak_mem_mb=peak,
            peak_mem_method=method,
            warmup=warmup,
            iters=len(times),
            loadavg=max(loads) if loads else None,
            cpus=os.cpu_count(),
            other_load=other_load,
        )

    def _timed(self, x: torch.Tensor, iters: int) -> list[float]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
            for start, end in events:
                start.record()
                self(x)
                end.record()
            torch.cuda.synchronize(self.device)
            return [start.elapsed_time(end) for start, end in events]
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            self(x)
            times.append((time.perf_counter() - t0) * 1000.0)
        return times


#: Consecutive timed calls of one runner in :func:`measure_side_by_side`.
SIDE_BY_SIDE_BLOCK = 5


def _check_counts(warmup: int, iters: int) -> None:
    if warmup < 0 or iters < 1:
        raise TerraLiteError(f"need warmup >= 0 and iters >= 1, got warmup={warmup}, iters={iters}")


@torch.no_grad()
def measure_side_by_side(runners: list[Runner], warmup: int = 10, iters: int = 300) -> list[LatencyStats]:
    """Time CPU ``runners`` in turn, :data:`SIDE_BY_SIDE_BLOCK` calls of each at a time, so that a machine whose
    speed drifts (a shared CPU, its clock, other work) moves every runner's figures alike and their ratios hold.
    (Blocks rather than single calls: a runner that follows another starts with the other's data in the caches;
    in blocks that costs the first call of each block, not every call, and the median does not see it.)

    Each runner's warm-up runs alone first, with its own memory meter (the memory its calls add), as in
    :meth:`Runner.measure`; the load average is taken before the warm-ups and after the last call.
    """
    _check_counts(warmup, iters)
    if any(r.device.type != "cpu" for r in runners):
        raise TerraLiteError("side-by-side timing is for CPU runners; time GPU runners one at a time (Runner.measure)")
    load_before = _loadavg()
    inputs, peaks = [], []
    for runner in runners:
        x = runner.make_input()
        meter = runner._memory_meter()
        meter.start()
        for _ in range(max(warmup, 1)):  # at least one call: arenas and workspaces are allocated on the first
            runner(x)
        peaks.append((meter.stop(), meter.method))
        inputs.append(x)
    times: list[list[float]] = [[] for _ in runners]
    others = OtherLoad()
    others.start()
    for start in range(0, iters, SIDE_BY_SIDE_BLOCK):
        for runner, x, series in zip(runners, inputs, times):
            for _ in range(min(SIDE_BY_SIDE_BLOCK, iters - start)):
                t0 = time.perf_counter()
                runner(x)
                series.append((time.perf_counter() - t0) * 1000.0)
    other_load = others.stop()
    load_after = _loadavg()
    return [runner._stats(series, peak, method, warmup, [load_before, load_after], other_load)
            for runner, series, (peak, method) in zip(runners, times, peaks)]


def _loadavg() -> float | None:
    """The 1-minute load average, or None where the system does not tell it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None
