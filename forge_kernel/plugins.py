"""Plugin discovery (entry-point group ``forge_kernel``), once per process.

Minimal version: the hardened loader (allow/block lists, failure isolation, strict mode) replaces
the body of :func:`discover` without changing :class:`PluginHost`'s public surface.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pluggy

from forge_kernel import hookspecs
from forge_kernel.markers import PROJECT_NAME
from forge_kernel.registry import KINDS, Registry


class PluginHost:
    """A pluggy manager plus the registry its registration hooks filled."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.pm.hook

    def register(self, plugin: object, name: str) -> None:
        """Register one plugin object and collect its registrations."""
        self.pm.register(plugin, name=name)
        for kind, hook_name in KINDS.items():
            impls = [i for i in self.pm.get_hookcallers(plugin) or [] if i.name == hook_name]
            if not impls:
                continue
            hook = getattr(self.pm.subset_hook_caller(hook_name, remove_plugins=[
                p for p in self.pm.get_plugins() if p is not plugin]), "__call__")
            hook(register=lambda n, f, _k=kind: self.registry.add(_k, n, f, name))

    def discover(self) -> None:
        for ep in entry_points(group=PROJECT_NAME):
            self.register(ep.load(), ep.name)


_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide host; plugins are discovered on first call."""
    global _host
    if _host is None:
        _host = PluginHost()
        _host.discover()
    return _host
