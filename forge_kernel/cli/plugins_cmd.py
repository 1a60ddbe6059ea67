"""``forge plugins``: what is installed, what it provides, and what failed."""

from __future__ import annotations

import json
from dataclasses import asdict

import click


def _provides(status) -> list[str]:  # noqa: ANN001 - a PluginStatus
    """Kinds it registered, then its other hooks (``commands``, ``config_sections``,
    ``startup``, ...)."""
    from forge_kernel.registry import KINDS

    kind_hooks = set(KINDS.values())
    others = [h.removeprefix("forge_register_").removeprefix("forge_")
              for h in status.hooks if h not in kind_hooks]
    return [*status.kinds, *others]


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_command(as_json: bool) -> None:
    """List installed plugins: name, distribution, version, kinds, status (with errors)."""
    from forge_kernel.plugins import get_host

    statuses = get_host().statuses
    if as_json:
        click.echo(json.dumps([asdict(s) for s in statuses], indent=2))
        return
    if not statuses:
        click.echo("no plugins installed (try: pip install forge-plugin-cpu forge-plugin-gguf)")
        return
    header = ("NAME", "DISTRIBUTION", "VERSION", "PROVIDES", "STATUS")
    rows = [(s.name, s.distribution, s.version, ", ".join(_provides(s)) or "-",
             s.status if s.error is None else f"{s.status}: {s.error}") for s in statuses]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(row[:4], widths, strict=True)]
        click.echo("  ".join([*cells, row[4]]))
