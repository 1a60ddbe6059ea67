"""Hook implementations: the ``forge eval`` command group."""

from __future__ import annotations

from forge_kernel import hookimpl


@hookimpl
def forge_register_commands(cli) -> None:
    from forge_plugin_eval.cli import eval_group

    cli.add_command(eval_group)
