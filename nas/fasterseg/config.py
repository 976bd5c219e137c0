"""Configuration of a FasterSeg search: typed, with presets, overridable with ``key=value``."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    data: str = ""
    out: str = ""
    preset: str = "oem"  # search-space preset (terralite.search_spaces.fasterseg.config.PRESETS)
    space: dict = field(default_factory=dict)  # overrides of FasterSegSpaceConfig fields
    target: TargetConfig = field(default_factory=TargetConfig)
    lut: str | None = None  # latency table; None: measure one for the target into RUN/lut.json
    lut_warmup: int = 5
    lut_iters: int = 20
    warmup_epochs: int = 20
    epochs: int = 30
    steps_per_epoch: int | None = None  # cap on weight steps per epoch (None: one pass over the weight half)
    crop: int = 512
    batch_size: int = 8
    workers: int | None = None
    bands: list[int] | None = None
    skip_missing: bool = False
    lr_weights: float = 0.02
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
    amp: bool = True  # bf16 autocast on CUDA
    channels_last: bool = True  # on CUDA
    seed: int = 0

    def validate(self) -> "FasterSegSearchConfig":
        if not self.data:
            raise TerraLiteError("search config: 'data' (the dataset root) is required")
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
        return self


SEARCH_PRESETS: dict[str, dict] = {
    # the OpenEarthMap authors' space; 512 px crops, 20 warm-up + 30 search epochs
    "oem": {"preset": "oem"},
    # the OEM space searched on a 2-core CPU in about an hour: 64 px crops, 6 warm-up + 30 search epochs of 12 steps;
    # the architecture lr is raised so that 360 steps can move α, β and the width logits by units
    # (lr x steps = 5.4; the full schedule's ~9,400 steps at 3e-4 give 2.8)
    "oem-cpu": {"preset": "oem", "crop": 64, "batch_size": 4, "warmup_epochs": 6, "epochs": 30, "steps_per_epoch": 12,
                "val_images": 8, "lr_arch": 0.015},
    # minutes on a laptop CPU: a 6-layer thin lattice, two widths, 64 px crops, one epoch of each phase
    "tiny": {"preset": "tiny", "space": {"widths": [6, 12]}, "crop": 64, "batch_size": 4, "warmup_epochs": 1,
             "epochs": 1, "steps_per_epoch": 4, "val_images": 4, "lut_warmup": 1, "lut_iters": 3,
             "target": {"size": 64, "fps": 100.0}},
}
