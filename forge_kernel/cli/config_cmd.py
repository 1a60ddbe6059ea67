"""``forge config``: the effective configuration and where each value comes from."""

from __future__ import annotations

import json

import click


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def config_command(as_json: bool) -> None:
    """Print effective settings (defaults < config file < FORGE_* env < flags) and sources."""
    from forge_kernel.config import config_file, load_config

    rows = load_config().effective()  # a ConfigError is reported by the forge group
    if as_json:
        click.echo(json.dumps({k: {"value": v, "source": s} for k, v, s in rows}, indent=2))
        return
    click.echo(f"# config file: {config_file() or 'none'}")
    width = max(len(k) for k, _, _ in rows)
    for key, value, source in rows:
        click.echo(f"{key.ljust(width)}  {json.dumps(value)}  ({source})")
