"""The SparseMask search space behind one object: choices, supernet, derivation, standalone networks."""

from __future__ import annotations

import numpy as np

from terralite.search_spaces.sparsemask.arch import mask_to_arch, max_arch, min_arch, num_connections, sample_arch, validate_arch
from terralite.search_spaces.sparsemask.derive import DEFAULT_THRESHOLD, derive_mask
from terralite.search_spaces.sparsemask.network import SparseMaskNet, build
from terralite.search_spaces.sparsemask.supernet import SparseMaskSupernet
from terralite.search_spaces.sparsemask.topology import all_connections


class SparseMaskSearchSpace:
    """90 binary choices (keep / drop one decoder connection), see :mod:`terralite.search_spaces.sparsemask.topology`."""

    name = "sparsemask"

    def __init__(self, in_channels: int = 3, num_classes: int = 8, encoder_weights: str | None = None):
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.encoder_weights = encoder_weights

    @staticmethod
    def choices() -> list[tuple[int, int, int]]:
        """Every connection ``(stage, kind, index)`` that can be kept or dropped."""
        return all_connections()

    def supernet(self, noise_std: float = 0.1) -> SparseMaskSupernet:
        return SparseMaskSupernet(self.in_channels, self.num_classes, self.encoder_weights, noise_std=noise_std)

    def derive(self, state: SparseMaskSupernet | np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> dict:
        """Architecture from a supernet's gates (or a ``[9, 9, 2]`` gate array): threshold + clean-up rules."""
        gates = state.gate_values() if isinstance(state, SparseMaskSupernet) else np.asarray(state)
        return mask_to_arch(derive_mask(gates, threshold), encoder_weights=self.encoder_weights)

    def build(self, arch: dict) -> SparseMaskNet:
        return build(arch, in_channels=self.in_channels, num_classes=self.num_classes)

    @staticmethod
    def validate(arch: dict) -> dict:
        return validate_arch(arch)

    @staticmethod
    def max_arch() -> dict:
        return max_arch()

    @staticmethod
    def min_arch() -> dict:
        return min_arch()

    @staticmethod
    def sample(rng: np.random.Generator | int | None = None) -> dict:
        return sample_arch(rng)

    @staticmethod
    def size(arch: dict) -> int:
        """Number of kept connections."""
        return num_connections(arch)
