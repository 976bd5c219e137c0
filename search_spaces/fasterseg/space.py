"""The FasterSeg search space behind one interface: choices, sampling, extremes, supernet, derive, build."""

from __future__ import annotations

import numpy as np

from terralite.search_spaces.fasterseg.config import FasterSegSpaceConfig, preset_config
from terralite.search_spaces.fasterseg.derive import DOWN, derive_arch
from terralite.search_spaces.fasterseg.network import FasterSegNet
from terralite.search_spaces.fasterseg.ops import OP_NAMES
from terralite.search_spaces.fasterseg.supernet import ROLES, WIDTH_OFFSET, FasterSegSupernet


class FasterSegSearchSpace:
    """FasterSeg space of a config (``layers``, ``F``, width choices, stem/head widths, branch sets)."""

    def __init__(self, cfg: FasterSegSpaceConfig | None = None, in_channels: int = 3, num_classes: int = 8):
        self.cfg = (cfg or FasterSegSpaceConfig()).validate()
        self.in_channels, self.num_classes = in_channels, num_classes

    @classmethod
    def from_preset(cls, name: str, in_channels: int = 3, num_classes: int = 8, **overrides) -> "FasterSegSearchSpace":
        return cls(preset_config(name, **overrides), in_channels, num_classes)

    @property
    def choices(self) -> dict:
        """What can be chosen, for documentation and logs."""
        c = self.cfg
        return {"ops": list(OP_NAMES), "widths": [f"{w}/{c.width_base}" for w in c.widths], "layers": c.layers,
                "branch_sets": c.branch_sets, "scales": [8, 16, 32]}

    def role_widths(self, role: str) -> tuple[int, int]:
        """(stem width, head width) numerators of a role: full for the teacher, the config's for the student."""
        if role == "teacher":
            return self.cfg.width_base, self.cfg.width_base
        return self.cfg.student_stem_width, self.cfg.student_head_width

    def arch_from_params(self, alphas, betas, ratios, branch_set, role: str = "student") -> dict:
        """Apply the derivation rules to arrays of architecture parameters (``ratios=None``: full width)."""
        stem_w, head_w = self.role_widths(role)
        c = self.cfg
        return derive_arch(alphas, betas, ratios, list(branch_set), layers=c.layers, F=c.F, width_base=c.width_base,
                           width_choices=list(c.widths), stem_width=stem_w, head_width=head_w)

    def _shapes(self) -> tuple[list, list, list]:
        L, n_ops, n_w = self.cfg.layers, len(OP_NAMES), len(self.cfg.widths)
        return ([(L - j, n_ops) for j in range(3)], [None, (L - 2, 2), (L - 3, 2)],
                [(L - 1 - WIDTH_OFFSET[j], n_w) for j in range(3)])

    def sample(self, rng: np.random.Generator, role: str = "student") -> dict:
        """A random derivable architecture: random parameters put through the derivation rules."""
        a_shapes, b_shapes, r_shapes = self._shapes()
        alphas = [rng.normal(size=s) for s in a_shapes]
        betas = [None] + [rng.normal(size=s) for s in b_shapes[1:]]
        ratios = [rng.normal(size=s) for s in r_shapes] if role == "student" else None
        branch_set = self.cfg.branch_sets[int(rng.integers(len(self.cfg.branch_sets)))]
        return self.arch_from_params(alphas, betas, ratios, branch_set, role)

    def _extreme(self, op: str, late_downs: bool, ratio_index: int | None, skip_first: bool, role: str) -> dict:
        a_shapes, b_shapes, r_shapes = self._shapes()
        alphas = []
        for shape in a_shapes:
            a = np.zeros(shape)
            a[:, OP_NAMES.index(op)] = 1.0
            if skip_first:
                a[:, OP_NAMES.index("skip")] = 2.0
            alphas.append(a)
        betas = [None]
        for shape in b_shapes[1:]:
            b = np.zeros(shape)
            order = np.arange(shape[0], dtype=float)
            b[:, DOWN] = order if late_downs else -order
            betas.append(b)
        ratios = None
        if ratio_index is not None:
            ratios = []
            for shape in r_shapes:
                r = np.zeros(shape)
                r[:, ratio_index] = 1.0
                ratios.append(r)
        branch_set = max(self.cfg.branch_sets, key=lambda bs: sum(bs)) if late_downs else min(self.cfg.branch_sets, key=lambda bs: sum(bs))
        return self.arch_from_params(alphas, betas, ratios, branch_set, role)

    def max_arch(self) -> dict:
        """The heaviest architecture: teacher widths, conv_2x everywhere, downsampling as late as allowed."""
        return self._extreme("conv_2x", late_downs=True, ratio_index=None, skip_first=False, role="teacher")

    def min_arch(self) -> dict:
        """The lightest student: the most skips removed, zoomed_conv elsewhere, narrowest widths, early downs."""
        return self._extreme("zoomed_conv", late_downs=False, ratio_index=0, skip_first=True, role="student")

    def supernet(self) -> FasterSegSupernet:
        return FasterSegSupernet(self.cfg, self.in_channels, self.num_classes)

    def derive(self, supernet: FasterSegSupernet, role: str, branch_set: list[int]) -> dict:
        """The architecture a supernet's current parameters give for ``role`` and ``branch_set``."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        alphas = [a.detach().cpu().numpy() for a in supernet.alphas(role)]
        betas = [None] + [b.detach().cpu().numpy() for b in supernet.betas(role)[1:]]
        ratios = [r.detach().cpu().numpy() for r in supernet.ratios()] if role == "student" else None
        return self.arch_from_params(alphas, betas, ratios, branch_set, role)

    def build(self, arch: dict) -> FasterSegNet:
        """The plain network of an architecture, with this space's bands and classes."""
        return FasterSegNet(arch, self.in_channels, self.num_classes)
