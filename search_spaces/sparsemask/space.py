"""The SparseMask search space behind the :class:`~terralite.search_spaces.base.SearchSpace` contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from terralite.search_spaces.base import SearchSpace
from terralite.search_spaces.sparsemask.arch import ENCODERS, dumps_arch, loads_arch, mask_to_arch, max_arch, min_arch, sample_arch, validate_arch
from terralite.search_spaces.sparsemask.cost import CostModel
from terralite.search_spaces.sparsemask.derive import DEFAULT_THRESHOLD, derive_mask
from terralite.search_spaces.sparsemask.network import SparseMaskNet, build
from terralite.search_spaces.sparsemask.supernet import GATE_NOISE_STD, SparseMaskSupernet
from terralite.search_spaces.sparsemask.topology import DECODER_CHANNELS, NUM_STAGES, candidates, stage_name


class SparseMaskSearchSpace(SearchSpace):
    """90 binary choices (keep / drop one decoder connection), see :mod:`terralite.search_spaces.sparsemask.topology`."""

    name = "sparsemask"

    def __init__(self, in_channels: int = 3, num_classes: int = 8):
        self.in_channels = in_channels
        self.num_classes = num_classes

    @property
    def choices(self) -> dict:
        """Each stage's candidate inputs, each of which is kept or dropped; the fixed encoder and width."""
        return {"encoder": ENCODERS[0], "decoder_channels": DECODER_CHANNELS,
                "stages": {stage_name(s): candidates(s) for s in range(NUM_STAGES)}}

    def sample(self, rng: np.random.Generator) -> dict:
        """A random architecture as a search could produce it (see :func:`~.arch.sample_arch`)."""
        return sample_arch(rng)

    def min_arch(self) -> dict:
        return min_arch()

    def max_arch(self) -> dict:
        return max_arch()

    def supernet(self, noise_std: float = GATE_NOISE_STD, encoder_weights: str | Path | None = None) -> SparseMaskSupernet:
        """The gated dense decoder on the encoder (loaded from ``encoder_weights`` when given)."""
        return SparseMaskSupernet(self.in_channels, self.num_classes, encoder_weights, noise_std=noise_std)

    def derive(self, state: SparseMaskSupernet | np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> dict:
        """Architecture from a supernet's gates (or a ``[9, 9, 2]`` gate array): threshold + clean-up rules."""
        gates = state.gate_values() if isinstance(state, SparseMaskSupernet) else np.asarray(state)
        return mask_to_arch(derive_mask(gates, threshold))

    def build(self, arch: dict, encoder_weights: str | Path | None = None) -> SparseMaskNet:
        """The derived network, its encoder loaded from ``encoder_weights`` when given."""
        return build(arch, in_channels=self.in_channels, num_classes=self.num_classes, encoder_weights=encoder_weights)

    def validate(self, arch, source: str = "arch") -> dict:
        return validate_arch(arch, source)

    def to_json(self, arch: dict) -> str:
        return dumps_arch(arch)

    def from_json(self, text: str, source: str = "sparsemask arch") -> dict:
        return loads_arch(text, source)

    def cost(self, arch: dict, size: int = 1024) -> dict[str, int]:
        """Exact ``{"params", "macs"}`` from the per-connection :class:`~.cost.CostModel`."""
        arch = validate_arch(arch)
        model = CostModel(size, in_channels=self.in_channels, num_classes=self.num_classes,
                          decoder_channels=arch["decoder_channels"])
        return {"params": model.arch_params(arch), "macs": model.arch_macs(arch)}
