"""Named implementations per extension kind, filled by the ``forge_register_*`` hooks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from forge_kernel.errors import DuplicateImplementationError, UnknownImplementationError

KINDS: dict[str, str] = {
    "backend": "forge_register_backends",
    "scheduler": "forge_register_schedulers",
    "kv_cache": "forge_register_kv_caches",
    "quantizer": "forge_register_quantizers",
    "trainer": "forge_register_trainers",
    "tool": "forge_register_tools",
    "endpoint": "forge_register_endpoints",
    "model_architecture": "forge_register_model_architectures",
    "weight_loader": "forge_register_weight_loaders",
    "constraint": "forge_register_constraint_compilers",
    "speculator": "forge_register_speculators",
}
"""Extension kind -> the registration hook that fills it."""


@dataclass(slots=True, frozen=True)
class Implementation:
    """One registered factory of one kind."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    """Name of the plugin that registered it (entry-point name)."""


class Registry:
    """Holds every registered implementation; lookups are by explicit name only."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Implementation]] = {kind: {} for kind in KINDS}

    def add(self, kind: str, name: str, factory: Callable[..., Any], plugin: str) -> None:
        """Record one implementation; a second plugin using the same name is an error."""
        if kind not in self._items:
            raise ValueError(f"unknown extension kind {kind!r}")
        existing = self._items[kind].get(name)
        if existing is not None:
            raise DuplicateImplementationError(
                f"{kind} {name!r} is registered by both plugin {existing.plugin!r} "
                f"and plugin {plugin!r}; disable one with FORGE_DISABLE_PLUGINS"
            )
        self._items[kind][name] = Implementation(kind, name, factory, plugin)

    def remove_plugin(self, plugin: str) -> None:
        """Forget everything one plugin registered (used to roll back a failed plugin)."""
        for items in self._items.values():
            for name in [n for n, impl in items.items() if impl.plugin == plugin]:
                del items[name]

    def names(self, kind: str) -> list[str]:
        """The registered names of ``kind``, sorted."""
        return sorted(self._items[kind])

    def implementations(self, kind: str) -> list[Implementation]:
        return [self._items[kind][name] for name in self.names(kind)]

    def get(self, kind: str, name: str) -> Implementation:
        """The implementation ``name``; :class:`UnknownImplementationError` lists the others."""
        try:
            return self._items[kind][name]
        except KeyError:
            available = ", ".join(self.names(kind)) or "none installed"
            raise UnknownImplementationError(
                f"no {kind.replace('_', ' ')} named {name!r} (available: {available})"
            ) from None

    def create(self, kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
        """Instantiate the implementation ``name`` of ``kind``."""
        return self.get(kind, name).factory(*args, **kwargs)

    def kinds_of(self, plugin: str) -> list[str]:
        return [kind for kind, items in self._items.items()
                if any(impl.plugin == plugin for impl in items.values())]
