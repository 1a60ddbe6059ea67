"""The plugin section of ``/health/full``."""

from __future__ import annotations

from typing import Any


def plugin_report() -> list[dict[str, Any]]:
    """Each discovered plugin with its status, as ``forge plugins --json`` shows it."""
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

    return asdict(status) if is_dataclass(status) else {"name": str(status)}
