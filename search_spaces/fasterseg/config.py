"""The knobs of the FasterSeg search space and its presets.

Widths are fractions of a cell's base channels, written as integer numerators over ``width_base``
(``8`` means 8/12 with the default base of 12) so that architecture files stay exact and readable.
Scales are written as the downsampling factor of the feature map: 8, 16, 32.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from terralite.errors import TerraLiteError

SCALES = (8, 16, 32)  # feature-map strides of the three lattice rows


@dataclass
class FasterSegSpaceConfig:
    """What can be searched (METHODS §2): ``layers`` cells over 1/8..1/32, base channels ``s·F``."""

    layers: int = 16
    F: int = 12
    width_base: int = 12
    widths: list[int] = field(default_factory=lambda: [4, 6, 8, 10, 12])  # numerators over width_base
    student_stem_width: int = 8
    student_head_width: int = 8
    # candidate branch sets; derivation keeps the best by mIoU × (latency/target)^-0.07
    branch_sets: list[list[int]] = field(default_factory=lambda: [[32, 16]])

    def validate(self) -> "FasterSegSpaceConfig":
        if self.layers < 6:
            raise TerraLiteError(f"search space: 'layers' must be at least 6 (a 1/32 branch needs room for two downsamplings), got {self.layers}")
        if self.F < 1:
            raise TerraLiteError(f"search space: 'F' must be a positive integer, got {self.F}")
        if not self.widths or sorted(set(self.widths)) != list(self.widths) or self.widths[0] < 1 or self.widths[-1] != self.width_base:
            raise TerraLiteError(f"search space: 'widths' must be increasing numerators ending at width_base={self.width_base}, got {self.widths}")
        for name in ("student_stem_width", "student_head_width"):
            value = getattr(self, name)
            if not 1 <= value <= self.width_base:
                raise TerraLiteError(f"search space: {name!r} must be in 1..{self.width_base}, got {value}")
        if not self.branch_sets:
            raise TerraLiteError("search space: 'branch_sets' must list at least one set of branch scales, e.g. [[32, 16]]")
        for bs in self.branch_sets:
            if not bs or len(set(bs)) != len(bs) or any(s not in SCALES for s in bs):
                raise TerraLiteError(f"search space: 'branch_sets' entry {bs} must hold distinct scales among {list(SCALES)}")
        return self


PRESETS: dict[str, dict] = {
    # the OpenEarthMap authors' configuration (METHODS §2)
    "oem": {},
    # a few layers and thin cells: searches in minutes on a laptop CPU at 64-128 px crops
    "tiny": {"layers": 6, "F": 4},
}


def preset_config(name: str, **overrides) -> FasterSegSpaceConfig:
    """The named preset (``oem`` or ``tiny``) with optional field overrides, validated."""
    if name not in PRESETS:
        raise TerraLiteError(f"unknown FasterSeg preset {name!r}; valid presets: {', '.join(PRESETS)}")
    cfg = FasterSegSpaceConfig(**PRESETS[name])
    return dataclasses.replace(cfg, **overrides).validate()


def cell_channels(scale: int, F: int, width: int, width_base: int) -> int:
    """Channels of a cell output at ``scale`` (8/16/32) and width ``width/width_base``: ``round(s·F·w)``.

    The original's ``num_filters`` (METHODS §5), used by the derived network, the supernet's width choices
    and the latency table alike, so that the three agree. For the OEM F = 12 and widths {4..12}/12 every
    value is a multiple of 8 (METHODS §2's slimmable rounding gives the same channels); at least 1.
    """
    return max(1, int(round(scale * F * width / width_base)))


def stem_channels(F: int, width: int, width_base: int) -> tuple[int, int, int]:
    """The stem's three output widths (METHODS §5): 2·round(2F·w), 2·round(4F·w), round(8F·w)."""
    w = width / width_base
    return 2 * int(round(2 * F * w)), 2 * int(round(4 * F * w)), int(round(8 * F * w))
