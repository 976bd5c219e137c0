"""The state a multi-trial search shares between its driver and its trials: the space (with the dataset's
bands and classes), the latency model, the target latency and band, and the run folder.

Layout of the run folder ``RUN``::

    search.json                the resolved settings, the strategy and the target (written once, checked after)
    trials/<trial>/arch.json   the trial's architecture as a model spec (``terralite train --model`` takes it)
    trials/<trial>/train/      the trial's training run (resumed from last.pt when a start was interrupted)
    trials/<trial>/result.json the trial's row; a trial with one is finished and is never run again
    trials.csv, trials.md      the table of all trials; best.json the best architecture; trials.png the plot
    summary.json               counts (drawn, trained, rejected by latency, ...), target, band, best
    latency_cache.json         sparsemask: each architecture's measured latency
    side_by_side_cache.json    with --measured-band: each architecture's latency ratio to the target, timed side by side
    nni/                       NNI's experiment folders (``terralite search nni``)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from terralite.atomic import write_text_atomic
from terralite.config import from_dict
from terralite.errors import TerraLiteError
from terralite.nas.multi_trial.config import MultiTrialConfig, settings_diff

FORMAT = "terralite-multi-trial"
VERSION = 1


def _data_io(cfg: MultiTrialConfig) -> tuple[int, int]:
    """(bands, classes) of the training split."""
    from terralite.data.registry import build_dataset

    dataset = build_dataset(cfg.train.data, cfg.train.train_split)
    return dataset.num_bands, dataset.num_classes


class SearchContext:
    """Built with :meth:`open` (the driver: checks or writes ``search.json``) or :meth:`load` (a trial process)."""

    def __init__(self, cfg: MultiTrialConfig, strategy: str):
        from terralite.nas.multi_trial.latency import LutLatency, MeasuredLatency, open_fasterseg_table
        from terralite.search_spaces.base import get_search_space

        self.cfg, self.strategy = cfg, strategy
        self.run_dir = Path(cfg.out)
        in_channels, num_classes = _data_io(cfg)
        if cfg.space == "fasterseg":
            self.space, table, self.size = open_fasterseg_table(cfg.lut, in_channels, num_classes)
            self.latency = LutLatency(self.space, table, self.size)
        else:
            if cfg.lut:
                raise TerraLiteError("--lut is for --space fasterseg: SparseMask has no latency table, its latency is "
                                     "measured (see --size, --latency-runtime)")
            self.space = get_search_space(cfg.space, in_channels=in_channels, num_classes=num_classes)
            self.size = cfg.size
            self.latency = MeasuredLatency(self.space, self.size, self.run_dir / "latency_cache.json", cfg.latency_runtime,
                                           "cpu", cfg.latency_warmup, cfg.latency_iters)
        self.target_arch = self._target_arch()
        self.target_ms = 1000.0 / cfg.target_fps if self.target_arch is None else self.latency(self.target_arch)
        self.band_ms = (self.target_ms * (1 - cfg.band), self.target_ms * (1 + cfg.band))
        self.side_by_side = self._side_by_side()

    def _target_arch(self) -> dict | None:
        if self.cfg.match is None:
            return None
        from terralite.search_spaces.arch_json import read_arch_file

        arch, source = read_arch_file(self.cfg.match, self.space.name)
        return self.space.validate(arch, source)

    def _side_by_side(self):
        """The band by measurement (``--measured-band``), timed like the latency: with the table's runtime at
        its size (FasterSeg), with ``--latency-runtime`` at ``--size`` (SparseMask); on the CPU."""
        from terralite.nas.multi_trial.latency import SideBySideRatio

        if self.cfg.measured_band is None:
            return None
        if self.latency.device != "cpu":
            raise TerraLiteError(f"--measured-band times networks side by side on the CPU, and {self.cfg.lut} was measured "
                                 f"on {self.latency.device}; leave --measured-band out or use a CPU table")
        return SideBySideRatio(self.space, self.target_arch, self.size, self.run_dir / "side_by_side_cache.json",
                               self.latency.runtime, self.cfg.latency_warmup, self.cfg.side_by_side_iters)

    def in_band(self, latency_ms: float) -> bool:
        return self.band_ms[0] <= latency_ms <= self.band_ms[1]

    def rejection(self, arch: dict, latency_ms: float) -> tuple[str, str] | None:
        """None when ``arch`` (priced at ``latency_ms``) lies in the band, and in the measured band when there is
        one (timed only once it lies in the first); else ``(count, reason)``: the summary count it adds to
        (``rejected_latency`` or ``rejected_measured``) and a line that says why."""
        if not self.in_band(latency_ms):
            lo, hi = self.band_ms
            return "rejected_latency", f"latency {latency_ms:.2f} ms outside [{lo:.2f}, {hi:.2f}] ms"
        if self.side_by_side is not None:
            ratio = self.side_by_side(arch)["ratio"]
            if abs(ratio - 1) > self.cfg.measured_band:
                return "rejected_measured", (f"measured side by side at {ratio:.3f}x the target's latency, outside "
                                             f"±{self.cfg.measured_band:g}")
        return None

    def trial_dir(self, trial_id: str) -> Path:
        return self.run_dir / "trials" / trial_id

    @property
    def settings_path(self) -> Path:
        return self.run_dir / "search.json"

    # -- search.json --------------------------------------------------------------------------------
    @classmethod
    def open(cls, cfg: MultiTrialConfig, strategy: str) -> "SearchContext":
        """The context of a starting search: a new run writes ``search.json``; an existing one must match it."""
        path = Path(cfg.out) / "search.json"
        if path.is_file():
            saved = cls._read(path)
            if saved["strategy"] != strategy:
                raise TerraLiteError(f"{cfg.out} holds a {saved['strategy']} search; choose another --out for a {strategy} search")
            # a setting added after the run started counts at its default (the value the run was made with)
            saved_cfg = dataclasses.asdict(from_dict(MultiTrialConfig, saved["config"]))
            diffs = settings_diff(saved_cfg, dataclasses.asdict(cfg))
            if diffs:
                raise TerraLiteError(f"{cfg.out} was started with other settings ({', '.join(diffs)} differ); rerun with the "
                                     f"settings in {path} to resume it, or choose another --out")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)  # before pricing: a measured latency is cached there
        ctx = cls(cfg, strategy)
        if not path.is_file():
            write_text_atomic(path, json.dumps({"format": FORMAT, "version": VERSION, "strategy": strategy,
                                                "target_ms": ctx.target_ms, "band_ms": list(ctx.band_ms),
                                                "config": dataclasses.asdict(cfg)}, indent=1) + "\n")
        return ctx

    @classmethod
    def load(cls, run_dir: str | Path) -> "SearchContext":
        """The context of a run folder, from its ``search.json`` (what a trial process reads)."""
        saved = cls._read(Path(run_dir) / "search.json")
        cfg = dataclasses.replace(from_dict(MultiTrialConfig, saved["config"]), out=str(Path(run_dir).resolve()))
        return cls(cfg, saved["strategy"])

    @staticmethod
    def _read(path: Path) -> dict:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise TerraLiteError(f"{path} does not exist: {path.parent} holds no multi-trial search") from None
        except json.JSONDecodeError as exc:
            raise TerraLiteError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
            raise TerraLiteError(f"{path} is not a version-{VERSION} TerraLite multi-trial settings file")
        return data
