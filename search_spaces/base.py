"""The search-space contract: what every space offers, and the registry that names the spaces.

A search strategy needs nothing but this interface. A one-shot method trains :meth:`SearchSpace.supernet`
and reads its result with :meth:`SearchSpace.derive`; a multi-trial one (random search, NNI tuners) draws
:meth:`SearchSpace.sample`, prices it with :meth:`SearchSpace.cost` and trains :meth:`SearchSpace.build`.
Architectures are plain JSON-able dicts, written with :meth:`SearchSpace.to_json` (carrying the space's
``format_version``) and read back, validated and migrated, with :meth:`SearchSpace.from_json`.

Spaces plug in through the ``terralite.search_spaces`` entry-point group (``pyproject.toml``), so the
registry never imports a space by name: ``get_search_space("fasterseg", cfg="tiny")``.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

from terralite.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

SEARCH_SPACES = Registry("search space", entry_point_group="terralite.search_spaces")


class SearchSpace(abc.ABC):
    """A set of architectures for ``in_channels`` bands and ``num_classes`` classes.

    Every method that returns an architecture returns it validated, in the space's canonical form (the
    current ``format_version``), so ``from_json(to_json(arch)) == arch``.
    """

    name: str  # the registry name, also the model-spec ``kind`` of the space's built networks
    in_channels: int
    num_classes: int

    @property
    @abc.abstractmethod
    def choices(self) -> dict:
        """What can be chosen, as a JSON-able dict (for logs, docs and strategies that enumerate it)."""

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> dict:
        """A random valid architecture, drawn only from ``rng`` (the same generator state, the same arch)."""

    @abc.abstractmethod
    def min_arch(self) -> dict:
        """The lightest architecture: its parameters and MACs (:meth:`cost`) are at most those of any
        architecture :meth:`sample` or :meth:`derive` gives (each space says how tight the bound is)."""

    @abc.abstractmethod
    def max_arch(self) -> dict:
        """The heaviest architecture: its parameters and MACs are at least those of any other."""

    @abc.abstractmethod
    def supernet(self, **kwargs: Any) -> nn.Module:
        """The weight-sharing network a one-shot search trains (freshly initialised)."""

    @abc.abstractmethod
    def derive(self, state: Any, **kwargs: Any) -> dict:
        """The architecture a search state stands for; ``state`` is at least the :meth:`supernet`."""

    @abc.abstractmethod
    def build(self, arch: dict, **kwargs: Any) -> nn.Module:
        """The plain network of ``arch`` (no gates, no mixed ops), freshly initialised."""

    @abc.abstractmethod
    def validate(self, arch: Any, source: str = "arch") -> dict:
        """``arch`` checked and in canonical form (older format versions migrated); a TerraLiteError naming
        ``source`` and the offending field otherwise."""

    @abc.abstractmethod
    def to_json(self, arch: dict) -> str:
        """Readable JSON text of ``arch`` with its ``format_version``."""

    @abc.abstractmethod
    def from_json(self, text: str, source: str = "arch JSON") -> dict:
        """The architecture in ``text``, validated (:meth:`validate`); errors name ``source`` (e.g. the file)."""

    @abc.abstractmethod
    def cost(self, arch: dict, size: int = 1024) -> dict[str, int]:
        """``{"params", "macs"}`` of the built network at ``1 x in_channels x size x size``, computed from the
        architecture alone (no network is built or traced).

        Both figures equal the profiler's (:mod:`terralite.benchmark.profiler`) on :meth:`build`'s network:
        the parameters of the deployed network (what one eval forward runs) and fvcore's MAC count.
        ``size`` must be a multiple of 32.
        """


def get_search_space(name: str, **kwargs: Any) -> SearchSpace:
    """The registered space ``name`` built with ``kwargs``; unknown names raise listing the valid ones."""
    return SEARCH_SPACES.get(name)(**kwargs)
