"""Hook implementations: the trainers and the ``forge train`` / ``forge runs`` commands."""

from __future__ import annotations

from forge_kernel import hookimpl


@hookimpl
def forge_register_trainers(register) -> None:  # noqa: ANN001 - pluggy signature
    from forge_plugin_train.trainers import TRAINERS

    for cls in TRAINERS:
        register(cls.name, cls)


@hookimpl
def forge_register_commands(cli) -> None:  # noqa: ANN001
    from forge_plugin_train.cli import runs_group, train_group

    cli.add_command(train_group)
    cli.add_command(runs_group)
