"""Plugin discovery through the ``forge_kernel`` entry-point group, once per process; selection
and failure rules: docs/architecture.md."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import entry_points
from typing import Any

import pluggy

from forge_kernel import config, hookspecs
from forge_kernel.errors import DuplicateImplementationError, PluginError
from forge_kernel.markers import PROJECT_NAME
from forge_kernel.registry import KINDS, Registry


@dataclass(slots=True)
class PluginStatus:
    """What ``forge plugins`` shows about one plugin."""

    name: str
    distribution: str
    version: str
    status: str  # loaded, disabled or failed
    kinds: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    error: str | None = None


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _selectors(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {_norm(part) for part in value.split(",") if part.strip()}


class PluginHost:
    """A pluggy manager plus the registry its registration hooks filled."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.statuses: list[PluginStatus] = []
        self.config_sections: dict[str, tuple[type, str]] = {}
        """Section name -> (dataclass, plugin), from ``forge_register_config_sections``."""

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.pm.hook

    def section_schemas(self) -> dict[str, type]:
        """``section -> dataclass`` of the loaded plugins (for ``load_config``)."""
        return {name: schema for name, (schema, _) in self.config_sections.items()}

    def register(self, plugin: object, name: str) -> None:
        """Register one plugin and run its own ``forge_register_*`` hooks; on any error
        everything it registered is rolled back."""
        self.pm.register(plugin, name=name)
        try:
            self.pm.check_pending()  # a misspelled forge_* hook is an error, not a silent no-op
            for kind, hook_name in KINDS.items():
                self._call_own(plugin, hook_name, register=partial(self._add, kind, name))
            self._call_own(plugin, "forge_register_config_sections",
                           register=partial(self._add_section, name))
        except BaseException:
            self.unregister(name)
            raise

    def _add(self, kind: str, plugin_name: str, impl_name: str,
             factory: Callable[..., Any]) -> None:
        if not isinstance(impl_name, str) or not impl_name:
            raise PluginError(f"{kind} names must be non-empty strings, got {impl_name!r}")
        if not callable(factory):
            raise PluginError(f"{kind} {impl_name!r}: factory {factory!r} is not callable")
        self.registry.add(kind, impl_name, factory, plugin_name)

    def _add_section(self, plugin_name: str, section: str, schema: type) -> None:
        if not dataclasses.is_dataclass(schema):
            raise PluginError(f"config section {section!r}: {schema!r} is not a dataclass")
        owner = self.config_sections.get(section)
        if owner is not None:
            raise DuplicateImplementationError(
                f"config section {section!r} is declared by both plugin {owner[1]!r} "
                f"and plugin {plugin_name!r}")
        self.config_sections[section] = (schema, plugin_name)

    def _call_own(self, plugin: object, hook_name: str, **kwargs: Any) -> None:
        """Call only ``plugin``'s ``hook_name``, through pluggy (so hook monitors see it)."""
        caller = getattr(self.pm.hook, hook_name)
        if not any(impl.plugin is plugin for impl in caller.get_hookimpls()):
            return
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        self.pm.subset_hook_caller(hook_name, remove_plugins=others)(**kwargs)

    def unregister(self, name: str) -> None:
        """Remove plugin ``name`` and everything it registered."""
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin, name=name)
        self.registry.remove_plugin(name)
        for section in [s for s, (_, owner) in self.config_sections.items() if owner == name]:
            del self.config_sections[section]

    def _load(self, plugin: object, status: PluginStatus) -> None:
        self.register(plugin, status.name)
        status.kinds = self.registry.kinds_of(status.name)
        status.hooks = self.hooks_of(status.name)

    def add_plugin(self, plugin: object, name: str, distribution: str = "-",
                   version: str = "-") -> PluginStatus:
        """Register a plugin that does not come from an entry point (tests)."""
        status = PluginStatus(name, distribution, version, "loaded")
        self._load(plugin, status)
        self.statuses.append(status)
        return status

    def hooks_of(self, name: str) -> list[str]:
        """The hooks plugin ``name`` implements, sorted."""
        plugin = self.pm.get_plugin(name)
        callers = self.pm.get_hookcallers(plugin) if plugin is not None else None
        return sorted(caller.name for caller in callers or [])

    def call_each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, BaseException]]:
        """Call a hook plugin by plugin; returns ``(plugin, error)`` for those that raised."""
        failures = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            try:
                impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except Exception as exc:  # noqa: BLE001 - reported, never fatal
                failures.append((impl.plugin_name, exc))
        return failures

    def restrict(self, allow: str) -> None:
        """Disable the loaded plugins not in ``allow``; a named one missing or failed: error."""
        wanted = _selectors(allow) or set()
        found: set[str] = set()
        for status in self.statuses:
            keys = {_norm(status.name), _norm(status.distribution)}
            if keys & wanted:
                found |= keys & wanted
                if status.status == "failed":
                    raise PluginError(f"plugin {status.name!r} was requested but failed to "
                                      f"load: {status.error}")
            elif status.status == "loaded":
                self.unregister(status.name)
                status.status = "disabled"
        missing = sorted(wanted - found)
        if missing:
            raise PluginError(f"requested plugins not installed: {', '.join(missing)}")

    def discover(self, allow: str | None = None) -> None:
        """Load the selected entry points; ``allow`` overrides ``FORGE_PLUGINS``."""
        env = os.environ
        allowed = _selectors(allow if allow is not None else env.get("FORGE_PLUGINS"))
        blocked = _selectors(env.get("FORGE_DISABLE_PLUGINS")) or set()
        strict = env.get("FORGE_PLUGINS_STRICT", "") not in ("", "0", "false")
        seen: set[str] = set()
        for ep in sorted(entry_points(group=PROJECT_NAME),  # deterministic, also on ties
                         key=lambda e: (e.name, e.dist.name if e.dist else "")):
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            keys = {_norm(ep.name), _norm(dist)}
            seen |= keys
            status = PluginStatus(ep.name, dist, version, "loaded")
            self.statuses.append(status)
            if keys & blocked or (allowed is not None and not keys & allowed):
                status.status = "disabled"
                continue
            requested = allowed is not None and bool(keys & allowed)
            try:
                owner = next((s for s in self.statuses if s is not status and s.name == ep.name
                              and s.status == "loaded"), None)
                if owner is not None:  # pluggy would refuse it with an unreadable message
                    raise DuplicateImplementationError(
                        f"plugin name {ep.name!r} is used by both {owner.distribution} and "
                        f"{dist}; disable one by its distribution name with "
                        "FORGE_DISABLE_PLUGINS")
                self._load(ep.load(), status)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not kill the kernel
                status.status = "failed"
                status.error = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line
                if requested or strict:
                    why = "it was requested by name" if requested else "FORGE_PLUGINS_STRICT=1"
                    raise PluginError(f"plugin {ep.name!r} ({dist} {version}) failed to load "
                                      f"and {why}: {status.error}") from exc
                print(f"forge: plugin {ep.name!r} ({dist} {version}) failed to load and was "
                      f"skipped: {status.error}", file=sys.stderr)
        for selector in sorted(((allowed or set()) | blocked) - seen):
            print(f"forge: warning: plugin selector {selector!r} matches no installed plugin",
                  file=sys.stderr)


_host: PluginHost | None = None
_allow_override: str | None = None


def select_plugins(allow: str | None) -> None:
    """Set the allow-list (``--plugins``) before the first :func:`get_host` call."""
    global _allow_override
    if _host is not None and allow != _allow_override:
        raise PluginError("plugins were already discovered; --plugins must come first")
    _allow_override = allow


def get_host() -> PluginHost:
    """The process-wide host; plugins are discovered on first call."""
    if _host is None:
        host = PluginHost()
        host.discover(_allow_override)
        install_host(host)
    return _host


def discovered() -> bool:
    """Whether the process-wide host exists (plugins were discovered or a host installed)."""
    return _host is not None


def install_host(host: PluginHost | None) -> PluginHost | None:
    """Make ``host`` the process-wide one (``None``: rediscover); returns the previous one."""
    global _host
    previous, _host = _host, host
    config.declare_sections(host.section_schemas if host is not None else None)
    return previous
