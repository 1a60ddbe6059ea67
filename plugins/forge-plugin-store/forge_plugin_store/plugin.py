"""Hook implementations: the store's commands and model-name resolution for ``--model``."""

from __future__ import annotations

from forge_kernel import hookimpl


@hookimpl
def forge_register_commands(cli) -> None:
    from forge_plugin_store import commands

    for command in (commands.pull_command, commands.list_command, commands.show_command,
                    commands.rm_command):
        cli.add_command(command)


@hookimpl
def forge_resolve_model(name: str):
    """Stored models, then built-in ones (the embedded default); ``None`` for other names."""
    from forge_plugin_store.store import find_model

    return find_model(name)
