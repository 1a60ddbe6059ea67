"""Adds ``forge run`` to the command line (click is imported, torch only when it runs)."""

from __future__ import annotations

import click

from forge_kernel import hookimpl


@hookimpl
def forge_register_commands(cli: click.Group) -> None:
    from forge_plugin_run.cli import run_command

    cli.add_command(run_command)
