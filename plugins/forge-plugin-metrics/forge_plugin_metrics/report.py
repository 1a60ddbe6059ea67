"""The plugin section of ``/health/full``."""

from __future__ import annotations

from typing import Any


def plugin_report(host: Any = None) -> list[dict[str, Any]]:
    """Each discovered plugin of ``host`` (default: the process's) with its status, as
    ``forge plugins --json`` shows it."""
    if host is None:
        from forge_kernel.plugins import get_host

        host = get_host()
    statuses = getattr(host, "statuses", None)
    if callable(statuses):
        statuses = statuses()
    if statuses:
        return [s if isinstance(s, dict) else _as_dict(s) for s in statuses]
    return [{"name": name, "status": "loaded", "kinds": host.registry.kinds_of(name)}
            for name, _ in host.pm.list_name_plugin()]


def _as_dict(status: Any) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(status):
        return asdict(status)
    return {"name": str(getattr(status, "name", status))}
