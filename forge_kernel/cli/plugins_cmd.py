"""``forge plugins``: what is installed, what it provides, what failed, and whether each
compute backend can run here."""

from __future__ import annotations

import json
from dataclasses import asdict

import click


def _provides(status) -> list[str]:  # noqa: ANN001 - a PluginStatus
    """Kinds it registered, then its other hooks (``commands``, ``startup``, ...)."""
    from forge_kernel.registry import KINDS

    kind_hooks = set(KINDS.values())
    others = [h.removeprefix("forge_register_").removeprefix("forge_")
              for h in status.hooks if h not in kind_hooks]
    return [*status.kinds, *others]


def backend_availability(registry) -> dict[str, list[dict]]:  # noqa: ANN001 - a Registry
    """Plugin name -> ``[{"name", "available", "reason"}]`` for each backend whose factory has
    ``availability() -> (ok, reason)``; a check that raises counts as unavailable."""
    found: dict[str, list[dict]] = {}
    for impl in registry.implementations("backend"):
        check = getattr(impl.factory, "availability", None)
        if not callable(check):
            continue
        try:
            ok, reason = check()
        except Exception as exc:  # noqa: BLE001 - a broken check is itself the reason
            ok, reason = False, f"availability check failed: {type(exc).__name__}: {exc}"
        found.setdefault(impl.plugin, []).append(
            {"name": impl.name, "available": bool(ok), "reason": "" if ok else str(reason)})
    return found


def _status(status, backends: list[dict]) -> str:  # noqa: ANN001 - a PluginStatus
    text = status.status if status.error is None else f"{status.status}: {status.error}"
    marks = [f"{b['name']}: {'available' if b['available'] else 'unavailable'}"
             for b in backends]
    return f"{text} ({', '.join(marks)})" if marks else text


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_command(as_json: bool) -> None:
    """List installed plugins: name, distribution, version, kinds, status (with errors), and
    whether each compute backend can run here. Exits 1 when an installed backend cannot,
    after printing why (e.g. forge-plugin-cuda on a machine without CUDA)."""
    from forge_kernel.plugins import get_host

    host = get_host()
    statuses = host.statuses
    backends = backend_availability(host.registry)
    if as_json:
        entries = []
        for s in statuses:
            entry = asdict(s)
            if s.name in backends:  # only where a backend reports its availability
                entry["backends"] = backends[s.name]
            entries.append(entry)
        click.echo(json.dumps(entries, indent=2))
    elif not statuses:
        click.echo("no plugins installed (try: pip install forge-plugin-cpu forge-plugin-gguf)")
    else:
        header = ("NAME", "DISTRIBUTION", "VERSION", "PROVIDES", "STATUS")
        rows = [(s.name, s.distribution, s.version, ", ".join(_provides(s)) or "-",
                 _status(s, backends.get(s.name, []))) for s in statuses]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
        for row in [header, *rows]:
            cells = [c.ljust(w) for c, w in zip(row[:4], widths, strict=True)]
            click.echo("  ".join([*cells, row[4]]))
    unavailable = [(plugin, b) for plugin, found in backends.items() for b in found
                   if not b["available"]]
    for plugin, b in unavailable:
        click.echo(f"backend {b['name']!r} (plugin {plugin!r}) is unavailable: {b['reason']}",
                   err=True)
    if unavailable:
        raise SystemExit(1)
