"""Configuration of a FasterSeg search: typed, with presets, overridable with ``key=value``.

The weight schedule is the original's (METHODS §2): SGD at ``lr_weights_warmup`` = 0.02 in the warm-up and
``lr_weights`` = 0.01 in the search phase, each ×``lr_decay_warmup`` / ×``lr_decay`` = 0.978 per epoch
(ExponentialLR, restarting at the search phase). The ``oem`` preset is that schedule on the authors' space.

The CPU presets shorten the phases, and scale the per-epoch decay so that each phase ends at the lr the
original's phase ends at (warm-up: 0.978^20 = 0.64 of its base lr, search: 0.978^30 = 0.51), i.e.
gamma = 0.978^(original epochs / preset epochs); the base lrs stay 0.02 and 0.01:

- ``oem-cpu``: 6 warm-up epochs → ``lr_decay_warmup`` = 0.978^(20/6) = 0.929; 30 search epochs → 0.978 as is.
- ``tiny``: one epoch per phase, which trains at the base lrs (the decay applies after it): nothing to scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from terralite.config import migrate_job_keys
from terralite.data.registry import DataConfig
from terralite.errors import TerraLiteError


@dataclass
class TargetConfig:
    """Where the searched student must be fast: the latency table must have been measured like this."""

    fps: float = 8.0
    band: float = 0.2  # the student's predicted FPS should fall in [fps, fps·(1+band)]
    size: int = 1024
    device: str = "cpu"  # device type the table was measured on: cpu or cuda
    runtime: str = "onnxruntime"
    precision: str = "fp32"


@dataclass
class FasterSegSearchConfig:
    data: DataConfig = field(default_factory=DataConfig)  # the dataset (a root folder is shorthand for data.root)
    out: str = ""
    preset: str = "oem"  # search-space preset (terralite.search_spaces.fasterseg.config.PRESETS)
    space: dict = field(default_factory=dict)  # overrides of FasterSegSpaceConfig fields
    target: TargetConfig = field(default_factory=TargetConfig)
    lut: str | None = None  # latency table; None: measure one for the target into RUN/lut.json
    lut_warmup: int = 5
    lut_iters: int = 20
    lut_rounds: int = 3
    warmup_epochs: int = 20
    epochs: int = 30
    steps_per_epoch: int = 0  # cap on weight steps per epoch; 0 = one pass over the weight half
    crop: int = 512
    batch_size: int = 8  # global batch (split across torchrun processes); at least 2 per process (BatchNorm)
    workers: int | None = None
    train_split: str = "train"  # cut into the weight half and the architecture half
    val_split: str = "val"  # the supernet's heads are evaluated on it after every epoch
    lr_weights_warmup: float = 0.02  # weight lr of the warm-up's first epoch
    lr_decay_warmup: float = 0.978  # ×gamma per warm-up epoch (ExponentialLR)
    lr_weights: float = 0.01  # weight lr of the search phase's first epoch (the schedule restarts there)
    lr_decay: float = 0.978  # ×gamma per search epoch (ExponentialLR)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grad_clip: float = 5.0
    lr_arch: float = 3e-4
    arch_betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    arch_weight_decay: float = 0.0
    latency_weight: float = 0.01  # initial weight of the latency loss (per ms), adapted every search epoch
    ohem_thresh: float = 0.7
    val_images: int | None = None  # evaluate the supernet on at most this many validation tiles
    device: str = "auto"
    amp: str = "auto"  # auto (bf16 where supported, else fp16, on CUDA; none on the CPU) | fp16 | bf16 | none
    channels_last: bool = True  # on CUDA
    seed: int = 0
    resume: bool = False

    @classmethod
    def migrate(cls, data: dict) -> dict:
        """TerraLite 0.1 keys: ``amp`` was a bool (bf16 on CUDA), ``steps_per_epoch: null`` meant a full pass."""
        data = migrate_job_keys(data)
        if isinstance(data.get("amp"), bool):
            data["amp"] = "auto" if data["amp"] else "none"
        if "steps_per_epoch" in data and data["steps_per_epoch"] is None:
            data["steps_per_epoch"] = 0
        return data

    def validate(self) -> "FasterSegSearchConfig":
        if not (self.data.root or self.data.image):
            raise TerraLiteError("search config needs a dataset: --data ROOT, or data.root / data.image in --config")
        if not self.out:
            raise TerraLiteError("search config: 'out' (the run folder) is required")
        if self.target.fps <= 0 or self.target.band < 0:
            raise TerraLiteError(f"search config: target.fps must be > 0 and target.band >= 0, got {self.target.fps}, {self.target.band}")
        if self.target.size % 32:
            raise TerraLiteError(f"search config: target.size must be divisible by 32, got {self.target.size}")
        if self.crop % 32:
            raise TerraLiteError(f"search config: 'crop' must be divisible by 32, got {self.crop}")
        if self.warmup_epochs < 0 or self.epochs < 0 or self.warmup_epochs + self.epochs < 1:
            raise TerraLiteError("search config: warmup_epochs and epochs must be >= 0 with at least one epoch in all")
        if self.batch_size < 2:
            raise TerraLiteError(f"search config: batch_size must be at least 2 (BatchNorm), got {self.batch_size}")
        if self.lut_rounds < 1:
            raise TerraLiteError(f"search config: lut_rounds must be at least 1, got {self.lut_rounds}")
        for name in ("lr_weights_warmup", "lr_weights"):
            if not getattr(self, name) > 0:
                raise TerraLiteError(f"search config: {name!r} must be > 0, got {getattr(self, name)}")
        for name in ("lr_decay_warmup", "lr_decay"):
            if not 0 < getattr(self, name) <= 1:
                raise TerraLiteError(f"search config: {name!r} (the lr factor per epoch) must be in (0, 1], got {getattr(self, name)}")
        if self.steps_per_epoch < 0:
            raise TerraLiteError(f"search config: steps_per_epoch must be 0 (a full pass) or more, got {self.steps_per_epoch}")
        return self


SEARCH_PRESETS: dict[str, dict] = {
    # the OpenEarthMap authors' space; 512 px crops, 20 warm-up + 30 search epochs
    "oem": {"preset": "oem"},
    # the OEM space searched on a 2-core CPU: 64 px crops, 6 warm-up + 30 search epochs of 4 steps (24 warm-up
    # and 120 search steps). A step is memory-bound on the 251 M-parameter supernet (each of its 4 passes reads the
    # weights and writes their gradients: ~3 s per pass on this 2-core CPU, one thread as fast as two), so a
    # search step (8 passes) costs ~25 s and this preset ~80 min on one thread; two targets ran side by side in
    # about that time. The architecture lr is raised so that 120 steps move α, β and the width logits as far as
    # the original's ~9,400 steps at 3e-4 do (lr x steps: 0.025 x 120 = 3.0 against 2.8); the warm-up's lr decay
    # is scaled to its 6 epochs (0.978^(20/6): it ends at 0.64 x 0.02 as the original's 20 epochs do, see the
    # docstring). The supernet trains for 144 weight steps: far too few to learn the task, see
    # results/fasterseg/README.md for what such a search can and cannot show
    "oem-cpu": {"preset": "oem", "crop": 64, "batch_size": 4, "warmup_epochs": 6, "epochs": 30, "steps_per_epoch": 4,
                "val_images": 8, "lr_arch": 0.025, "lr_decay_warmup": 0.978 ** (20 / 6)},
    # minutes on a laptop CPU: a 6-layer thin lattice, two widths, 64 px crops, one epoch of each phase (each at
    # its phase's base lr: no decay to scale)
    "tiny": {"preset": "tiny", "space": {"widths": [6, 12]}, "crop": 64, "batch_size": 4, "warmup_epochs": 1,
             "epochs": 1, "steps_per_epoch": 4, "val_images": 4, "lut_warmup": 1, "lut_iters": 3, "lut_rounds": 1,
             "target": {"size": 64, "fps": 100.0}},
}


def resolve_search_config(preset: str | None = None, yaml_path: str | None = None, overrides: list[str] | None = None,
                          **flags) -> FasterSegSearchConfig:
    """Defaults ← search preset ← YAML ← ``key=value`` overrides ← explicit flags (dotted names; None = not given).

    The preset is ``preset`` if given, else the YAML's/overrides' ``preset`` key, else ``oem``.
    """
    from terralite.config import preset_name, resolve_config

    name = preset_name(preset, yaml_path, overrides, "oem")
    if name not in SEARCH_PRESETS:
        raise TerraLiteError(f"unknown search preset {name!r}; valid presets: {', '.join(SEARCH_PRESETS)}")
    return resolve_config(FasterSegSearchConfig, yaml_path, overrides, base=SEARCH_PRESETS[name], fields=flags)
