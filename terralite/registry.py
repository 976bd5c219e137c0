"""Name → object registries (models, baselines, search spaces, runners, ...).

Duplicate names raise; unknown names raise and list the valid ones. A registry may also be fed by a
setuptools entry-point group, so that packages standing on the core (``benchmark``, ``search_spaces``)
can plug builders into it without the core importing them: entries are loaded on first use.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Callable, Iterator

from terralite.errors import TerraLiteError


class Registry:
    """A named collection of objects of one kind."""

    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._entry_point_group = entry_point_group
        self._lazy: dict[str, metadata.EntryPoint] | None = None

    def register(self, name: str, obj: Any = None) -> Any:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator."""
        if obj is None:
            return lambda target: self.register(name, target)
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = obj
        return obj

    def _entry_points(self) -> dict[str, metadata.EntryPoint]:
        if self._lazy is None:
            found = {}
            if self._entry_point_group:
                for ep in metadata.entry_points(group=self._entry_point_group):
                    found[ep.name] = ep
            self._lazy = found
        return self._lazy

    def get(self, name: str) -> Any:
        if name not in self._entries:
            ep = self._entry_points().get(name)
            if ep is None:
                valid = ", ".join(self.names()) or "(none)"
                raise TerraLiteError(f"unknown {self.kind} {name!r}; valid names: {valid}")
            self._entries[name] = ep.load()
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(set(self._entries) | set(self._entry_points()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._entry_points()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


Builder = Callable[..., Any]
