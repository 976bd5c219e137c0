"""How a multi-trial search prices an architecture's latency before it trains it.

- **fasterseg** — the FasterSeg latency lookup table (:mod:`terralite.nas.fasterseg.latency`): the sum of the
  measured per-operator latencies of the derived network, at the table's input size, device and runtime.
  The search space is the one the table was measured for (its ``space`` condition), so a table and an
  architecture of another configuration cannot be mixed.
- **sparsemask** — SparseMask has no lookup table (its official search prices connections by a target
  ratio, ours by MACs: :mod:`terralite.nas.sparsemask.budget`), so its latency is *measured*: the whole
  network is built and timed (ONNX Runtime by default, :func:`terralite.nas.op_timer.time_module`, median of
  ``iters`` runs) at ``size`` on the CPU. Each architecture is timed once per run and cached in
  ``RUN/latency_cache.json``, so a resumed search prices its draws exactly as the first start did.

Either price can be checked by a second one, :class:`SideBySideRatio` (``--measured-band``): the architecture's
latency as a ratio to the target network's, both timed in one run, in turns (the benchmark's
:func:`~terralite.benchmark.runners.base.measure_side_by_side`). A table prices a network as the sum of its
operators and the whole network runs 0-20 % apart from that; a shared CPU moves one network's median by more than
5 % between runs of minutes apart; a ratio measured in turns sees neither. Cached in ``RUN/side_by_side_cache.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from terralite.atomic import write_text_atomic
from terralite.errors import TerraLiteError
from terralite.search_spaces.base import SearchSpace


def arch_key(space: SearchSpace, arch: dict) -> str:
    """A short stable fingerprint of an architecture (canonical JSON, SHA-256)."""
    from terralite.models import spec_hash

    return spec_hash({"kind": space.name, "arch": arch})


def measure_latency(space: SearchSpace, arch: dict, size: int, runtime: str = "onnxruntime", device: str = "cpu",
                    warmup: int = 3, iters: int = 10) -> float:
    """Median latency (ms) of one forward of ``arch``'s network at ``1 x in_channels x size x size``."""
    from terralite.nas.op_timer import time_module

    torch.manual_seed(0)
    net = space.build(arch)
    return time_module(net, (1, space.in_channels, size, size), runtime, torch.device(device), warmup, iters)


class LutLatency:
    """FasterSeg: latency predicted from a lookup table (exact sum of the table's entries)."""

    source = "lut"

    def __init__(self, space: SearchSpace, table, size: int):
        self.space, self.table, self.size = space, table, size
        self.runtime = table.conditions.get("runtime", "onnxruntime")
        self.device = table.conditions.get("device_type", "cpu")

    def __call__(self, arch: dict) -> float:
        from terralite.nas.fasterseg.latency import arch_latency

        return float(arch_latency(self.table, arch, self.size, self.space.in_channels, self.space.num_classes)["total"])


class _JsonCache:
    """A dict of per-architecture results in one JSON file, written atomically; re-read before each write,
    because the trial processes of an NNI search add entries too."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self) -> dict:
        if not self.path.is_file():
            return {}
        try:
            return json.loads(self.path.read_text())
        except json.JSONDecodeError:
            raise TerraLiteError(f"latency cache {self.path} is not valid JSON; delete it to measure again") from None

    def add(self, key: str, value) -> None:
        cached = self.read()
        cached[key] = value
        write_text_atomic(self.path, json.dumps(cached, indent=1, sort_keys=True) + "\n")


class MeasuredLatency:
    """Latency measured on this machine (``runtime`` on ``device``), cached per architecture in ``cache``."""

    source = "measured"

    def __init__(self, space: SearchSpace, size: int, cache: str | Path, runtime: str = "onnxruntime",
                 device: str = "cpu", warmup: int = 3, iters: int = 10):
        self.space, self.size, self.cache = space, size, _JsonCache(cache)
        self.runtime, self.device, self.warmup, self.iters = runtime, device, warmup, iters

    def __call__(self, arch: dict) -> float:
        key = arch_key(self.space, arch)
        cached = self.cache.read()
        if key in cached:
            return float(cached[key])
        ms = measure_latency(self.space, arch, self.size, self.runtime, self.device, self.warmup, self.iters)
        self.cache.add(key, ms)
        return ms


class SideBySideRatio:
    """An architecture's latency over the target architecture's, both built and timed in one run on the CPU
    (``runtime`` at ``size``; ``iters`` calls of each, in turns of five, after ``warmup``); cached per
    architecture in ``cache`` as ``{"ratio", "ms", "target_ms", "p10_ms", "p90_ms", "iters"}``.

    The ratio is of the two medians. The target's runner is built once per process and timed again beside
    every architecture, so each ratio holds the machine's speed of its own minute."""

    def __init__(self, space: SearchSpace, target: dict, size: int, cache: str | Path, runtime: str = "onnxruntime",
                 warmup: int = 3, iters: int = 30):
        self.space, self.target, self.size, self.cache = space, target, size, _JsonCache(cache)
        self.runtime, self.warmup, self.iters = runtime, warmup, iters
        self._target_runner = None

    def _runner(self, arch: dict):
        from terralite.benchmark.runners import build_runner

        torch.manual_seed(0)
        return build_runner(self.runtime, self.space.build(arch).eval(), size=self.size,
                            in_channels=self.space.in_channels, device="cpu")

    def __call__(self, arch: dict) -> dict:
        from terralite.benchmark.runners.base import measure_side_by_side

        key = arch_key(self.space, arch)
        cached = self.cache.read()
        if key in cached:
            return cached[key]
        if self._target_runner is None:
            self._target_runner = self._runner(self.target)
        target, this = measure_side_by_side([self._target_runner, self._runner(arch)], self.warmup, self.iters)
        entry = {"ratio": this.latency_ms_median / target.latency_ms_median, "ms": this.latency_ms_median,
                 "target_ms": target.latency_ms_median, "p10_ms": this.latency_ms_p10, "p90_ms": this.latency_ms_p90,
                 "iters": self.iters}
        self.cache.add(key, entry)
        return entry


def open_fasterseg_table(lut: str | Path | None, in_channels: int, num_classes: int):
    """``(space, table, size)`` of a FasterSeg table: the space is the table's (its ``space`` condition)."""
    from terralite.nas.fasterseg.latency import space_fingerprint
    from terralite.nas.latency_table import LatencyTable
    from terralite.search_spaces.fasterseg.config import FasterSegSpaceConfig
    from terralite.search_spaces.fasterseg.space import FasterSegSearchSpace

    if not lut:
        raise TerraLiteError("--space fasterseg needs --lut TABLE (measure one with `terralite latency-table fasterseg`)")
    table = LatencyTable.load(lut)
    fields = table.conditions.get("space")
    if table.conditions.get("search_space") != "fasterseg" or not isinstance(fields, dict):
        raise TerraLiteError(f"{lut} is not a FasterSeg latency table (its conditions name no FasterSeg space)")
    try:
        space = FasterSegSearchSpace(FasterSegSpaceConfig(**fields), in_channels, num_classes)
    except TypeError as exc:
        raise TerraLiteError(f"{lut}: its space condition does not fit this TerraLite's FasterSeg space ({exc}); "
                             "measure the table again") from None
    table.check_conditions({"search_space": "fasterseg", "in_channels": in_channels, "num_classes": num_classes,
                            "space": space_fingerprint(space)})
    size = table.conditions.get("size")
    if not isinstance(size, int) or size % 32:
        raise TerraLiteError(f"{lut}: condition 'size' must be a multiple of 32, got {size!r}")
    return space, table, size
