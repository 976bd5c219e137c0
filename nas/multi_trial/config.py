"""Settings of a multi-trial search (random baseline or NNI tuner): the space, the latency target and band,
the objective, and the one training recipe and proxy budget every trial is trained with.

The resolved settings are written to ``RUN/search.json`` when a search starts; a later start in the same
folder (a resume, or an NNI trial process) reads them back, and a start with other settings is refused —
trials trained under different recipes or targets must not end up in one table.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from terralite.engine.presets import TrainConfig, resolve_train_config
from terralite.errors import TerraLiteError
from terralite.nas.multi_trial.objective import check_objective

SPACES = ("fasterseg", "sparsemask")
#: Settings a later start of the same run may change (where things live, how a trial is run, not what it is).
MAY_CHANGE = ("out", "measure", "train.device", "train.workers", "train.data")
#: Data fields holding paths: stored absolute, because NNI starts trial processes in folders of its own.
_DATA_PATHS = ("root", "image", "label", "region_mask")


@dataclass
class MultiTrialConfig:
    """One multi-trial search. ``target_fps`` or ``match`` (an architecture JSON) sets the target latency."""

    space: str = "fasterseg"
    out: str = ""
    lut: str | None = None  # fasterseg: the latency table (its space and input size are the search's)
    target_fps: float | None = None
    match: str | None = None  # architecture or spec JSON whose latency is the target (e.g. a searched student)
    band: float = 0.05  # an architecture is trained only if |latency / target - 1| <= band
    # and, when set, only if |ratio - 1| <= measured_band, the ratio of its latency to the --match network's timed
    # side by side (latency.SideBySideRatio, side_by_side_iters calls of each): the band by measurement
    measured_band: float | None = None
    side_by_side_iters: int = 30
    size: int = 1024  # sparsemask: input size its latency is measured at (fasterseg: the table's)
    latency_runtime: str = "onnxruntime"  # sparsemask: runtime of the measured latency (and of --measure)
    latency_warmup: int = 3
    latency_iters: int = 10
    objective: str = "fasterseg"  # terralite.nas.multi_trial.objective.OBJECTIVES
    eval_split: str = "val"  # split each trained trial is evaluated on (its final weights)
    measure: bool = False  # also time each trained network end to end (FasterSeg: beside its LUT latency)
    seed: int = 0  # the random baseline's draws and the NNI tuner's seed (training uses train.seed)
    # fasterseg: prior of each node's width in random draws and tuner proposals: P(choice k) ∝ width_skew**k
    # (1 = uniform; 0.1 = each wider choice 10x less likely). A latency band near the fastest architectures
    # holds almost no uniform draw: the latency term drives searched students to the narrowest widths.
    width_skew: float = 1.0
    # sparsemask: probability that each candidate connection is kept in random draws and tuner proposals
    # (0.5 = every connectivity equally likely); a band around a sparse searched network needs fewer
    keep_prob: float = 0.5
    train: TrainConfig = field(default_factory=TrainConfig)  # the recipe and budget of every trial

    def validate(self) -> "MultiTrialConfig":
        if self.space not in SPACES:
            raise TerraLiteError(f"unknown search space {self.space!r} for a multi-trial search; valid: {', '.join(SPACES)}")
        if not self.out:
            raise TerraLiteError("a multi-trial search needs --out RUN")
        if (self.target_fps is None) == (self.match is None):
            raise TerraLiteError("give exactly one target: --target-fps F or --match ARCH.json")
        if self.target_fps is not None and self.target_fps <= 0:
            raise TerraLiteError(f"--target-fps must be positive, got {self.target_fps}")
        if not 0 < self.band < 1:
            raise TerraLiteError(f"--band must lie in (0, 1), e.g. 0.05 for ±5 %, got {self.band}")
        if self.measured_band is not None:
            if not 0 < self.measured_band < 1:
                raise TerraLiteError(f"--measured-band must lie in (0, 1), e.g. 0.05 for ±5 %, got {self.measured_band}")
            if self.match is None:
                raise TerraLiteError("--measured-band times each architecture beside the target network: give the target "
                                     "as --match ARCH.json, not --target-fps")
        if self.side_by_side_iters < 5:
            raise TerraLiteError(f"--side-by-side-iters must be at least 5 (one turn), got {self.side_by_side_iters}")
        if self.size < 32 or self.size % 32:
            raise TerraLiteError(f"--size must be a positive multiple of 32, got {self.size}")
        if self.latency_iters < 1 or self.latency_warmup < 0:
            raise TerraLiteError("--latency-iters must be at least 1 and --latency-warmup at least 0")
        if not 0 < self.width_skew <= 1:
            raise TerraLiteError(f"--width-skew must lie in (0, 1] (1 = uniform widths), got {self.width_skew}")
        if self.width_skew != 1 and self.space != "fasterseg":
            raise TerraLiteError("--width-skew is for --space fasterseg (SparseMask has no width choices)")
        if not 0 < self.keep_prob < 1:
            raise TerraLiteError(f"--keep-prob must lie in (0, 1) (0.5 = uniform connectivity), got {self.keep_prob}")
        if self.keep_prob != 0.5 and self.space != "sparsemask":
            raise TerraLiteError("--keep-prob is for --space sparsemask (FasterSeg has no connection gates)")
        check_objective(self.objective)
        if not (self.train.data.root or self.train.data.image):
            raise TerraLiteError("a multi-trial search needs a dataset: --data ROOT")
        return self

    def absolute(self) -> "MultiTrialConfig":
        """A copy with every path made absolute."""
        data = dataclasses.replace(self.train.data, **{k: os.path.abspath(getattr(self.train.data, k))
                                                        for k in _DATA_PATHS if getattr(self.train.data, k)})
        paths = {k: os.path.abspath(getattr(self, k)) for k in ("out", "lut", "match") if getattr(self, k)}
        return dataclasses.replace(self, train=dataclasses.replace(self.train, data=data), **paths)


def resolve_multi_trial_config(train_preset: str | None = None, train_yaml: str | None = None,
                               train_overrides: list[str] | None = None, train_flags: dict | None = None,
                               **fields) -> MultiTrialConfig:
    """The search settings from ``fields`` (None = default) and the trials' recipe: the training preset
    (default: the space's own, ``fasterseg`` or ``sparsemask``) ← ``train_yaml`` ← ``train_overrides`` ←
    ``train_flags`` (explicit options such as ``epochs``, ``steps_per_epoch``, ``data.root``)."""
    given = {k: v for k, v in fields.items() if v is not None}
    space = given.get("space", MultiTrialConfig.space)
    train = resolve_train_config(train_preset or (space if space in SPACES else None), train_yaml, train_overrides,
                                 **(train_flags or {}))
    return MultiTrialConfig(**given, train=train).validate().absolute()


def settings_diff(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ between two ``to_dict`` forms (except :data:`MAY_CHANGE`)."""
    diffs = []
    for key in sorted(set(saved) | set(current)):
        name = prefix + key
        if name in MAY_CHANGE:
            continue
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += settings_diff(a, b, name + ".")
        elif a != b:
            diffs.append(name)
    return diffs
