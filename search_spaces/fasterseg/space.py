"""The FasterSeg search space behind the :class:`~terralite.search_spaces.base.SearchSpace` contract."""

from __future__ import annotations

import numpy as np

from terralite.search_spaces.base import SearchSpace
from terralite.search_spaces.fasterseg.arch import dumps_arch, loads_arch, validate_arch
from terralite.search_spaces.fasterseg.config import SCALES, FasterSegSpaceConfig, preset_config
from terralite.search_spaces.fasterseg.cost import arch_cost
from terralite.search_spaces.fasterseg.derive import DOWN, derive_arch
from terralite.search_spaces.fasterseg.network import FasterSegNet
from terralite.search_spaces.fasterseg.ops import OP_NAMES
from terralite.search_spaces.fasterseg.supernet import ROLES, WIDTH_OFFSET, FasterSegSupernet


class FasterSegSearchSpace(SearchSpace):
    """FasterSeg space of a config (``layers``, ``F``, width choices, stem/head widths, branch sets).

    ``cfg`` is a :class:`FasterSegSpaceConfig` or the name of a preset (``"oem"``, the default, or ``"tiny"``).
    Architectures of both roles belong to the space: the student's (narrow stem and head, searched widths),
    which :meth:`sample` and :meth:`derive` give by default, and the teacher's (full width).
    """

    name = "fasterseg"

    def __init__(self, cfg: FasterSegSpaceConfig | str | None = None, in_channels: int = 3, num_classes: int = 8):
        if isinstance(cfg, str):
            cfg = preset_config(cfg)
        self.cfg = (cfg or FasterSegSpaceConfig()).validate()
        self.in_channels, self.num_classes = in_channels, num_classes

    @classmethod
    def from_preset(cls, name: str, in_channels: int = 3, num_classes: int = 8, **overrides) -> "FasterSegSearchSpace":
        return cls(preset_config(name, **overrides), in_channels, num_classes)

    @property
    def choices(self) -> dict:
        """Per cell an op and a width, per branch where to downsample, and a branch set; the fixed knobs too."""
        c = self.cfg
        return {"ops": list(OP_NAMES), "widths": [f"{w}/{c.width_base}" for w in c.widths], "layers": c.layers,
                "branch_sets": c.branch_sets, "scales": list(SCALES), "F": c.F,
                "student_stem_width": f"{c.student_stem_width}/{c.width_base}",
                "student_head_width": f"{c.student_head_width}/{c.width_base}"}

    def role_widths(self, role: str) -> tuple[int, int]:
        """(stem width, head width) numerators of a role: full for the teacher, the config's for the student."""
        if role == "teacher":
            return self.cfg.width_base, self.cfg.width_base
        return self.cfg.student_stem_width, self.cfg.student_head_width

    def arch_from_params(self, alphas, betas, ratios, branch_set, role: str = "student") -> dict:
        """Apply the derivation rules to arrays of architecture parameters (``ratios=None``: full width).

        The teacher is decoded as the original builds it, with ``ignore_skip``: no skip chosen, no cell
        removed; the student keeps the skip-removal rules (see :mod:`.derive`)."""
        stem_w, head_w = self.role_widths(role)
        c = self.cfg
        return validate_arch(derive_arch(alphas, betas, ratios, list(branch_set), layers=c.layers, F=c.F, width_base=c.width_base,
                                         width_choices=list(c.widths), stem_width=stem_w, head_width=head_w,
                                         ignore_skip=role == "teacher"))

    def param_shapes(self) -> tuple[list, list, list]:
        """Shapes of the arrays :meth:`arch_from_params` takes: per scale α (cells, ops), β (cells, 2; None at
        1/8) and width logits (cells, widths). A multi-trial strategy sets them from its own choices."""
        return self._shapes()

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

    def _extreme(self, heaviest: bool) -> dict:
        """:meth:`max_arch` (``heaviest``) or :meth:`min_arch`, derived from hand-set parameters."""
        a_shapes, b_shapes, r_shapes = self._shapes()
        role = "teacher" if heaviest else "student"
        alphas = []
        for shape in a_shapes:
            a = np.zeros(shape)
            a[:, OP_NAMES.index("conv_2x" if heaviest else "zoomed_conv")] = 1.0
            if not heaviest:
                a[:, OP_NAMES.index("skip")] = 2.0  # skip first: the rules remove as many cells as they allow
            alphas.append(a)
        betas = [None]
        for shape in b_shapes[1:]:
            b = np.zeros(shape)
            order = np.arange(shape[0], dtype=float)
            b[:, DOWN] = -order if heaviest else order  # early downs for the heaviest, late for the lightest
            betas.append(b)
        ratios = None  # the teacher's widths are full
        if not heaviest:
            ratios = []
            for shape in r_shapes:
                r = np.zeros(shape)
                r[:, 0] = 1.0  # the narrowest width everywhere
                ratios.append(r)
        pick = max if heaviest else min
        branch_set = pick(self.cfg.branch_sets, key=lambda bs: (len(bs), sum(bs)))  # more, coarser branches cost more
        return self.arch_from_params(alphas, betas, ratios, branch_set, role)

    def max_arch(self) -> dict:
        """The heaviest architecture: teacher widths, every cell kept as conv_2x, downsampling as early as allowed.

        Early downs put the most cells at the coarse scales, whose channels grow with the stride (a cell's
        parameters grow as stride², its MACs stay about level), and make the branches part at once, so
        they share no cell. (At a strided cell zoomed_conv_2x would cost a resize more than conv_2x: under
        0.03% of the MACs for the tiny and oem presets, so the rule stays one op everywhere.)
        """
        return self._extreme(heaviest=True)

    def min_arch(self) -> dict:
        """The lightest architecture: a student with the most skips removed, zoomed_conv elsewhere, the
        narrowest widths and downsampling as late as allowed (few wide coarse cells; branches sharing their
        longest prefix, computed once). (At a strided cell a plain conv would save zoomed_conv's resize: under
        0.03% of the MACs for the tiny and oem presets.)"""
        return self._extreme(heaviest=False)

    def supernet(self) -> FasterSegSupernet:
        """The lattice supernet with teacher and student architecture parameters."""
        return FasterSegSupernet(self.cfg, self.in_channels, self.num_classes)

    def derive(self, state: FasterSegSupernet, role: str = "student", branch_set: list[int] | None = None) -> dict:
        """The architecture a supernet's current parameters give for ``role`` and ``branch_set``
        (default: the config's first branch set; the search derives every set and keeps the best)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        alphas = [a.detach().cpu().numpy() for a in state.alphas(role)]
        betas = [None] + [b.detach().cpu().numpy() for b in state.betas(role)[1:]]
        ratios = [r.detach().cpu().numpy() for r in state.ratios()] if role == "student" else None
        return self.arch_from_params(alphas, betas, ratios, branch_set or self.cfg.branch_sets[0], role)

    def build(self, arch: dict) -> FasterSegNet:
        """The plain network of an architecture, with this space's bands and classes."""
        return FasterSegNet(arch, self.in_channels, self.num_classes)

    def validate(self, arch, source: str = "fasterseg arch") -> dict:
        return validate_arch(arch, source)

    def to_json(self, arch: dict) -> str:
        """The canonical text: one cell per line (see :mod:`.arch`)."""
        return dumps_arch(arch)

    def from_json(self, text: str, source: str = "fasterseg arch") -> dict:
        return loads_arch(text, source)

    def cost(self, arch: dict, size: int = 1024) -> dict[str, int]:
        """Analytic ``{"params", "macs"}`` of the deployed network (auxiliary heads excluded), see :mod:`.cost`."""
        if size % 32:
            raise ValueError(f"input size must be a multiple of 32, got {size}")
        return arch_cost(arch, self.in_channels, self.num_classes, size)
