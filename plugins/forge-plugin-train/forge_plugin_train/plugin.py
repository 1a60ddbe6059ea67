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


@hookimpl
def forge_startup(context) -> None:  # noqa: ANN001
    """``forge serve --lora NAME=PATH``: load the adapters onto the model before it serves
    (held for the server's life; requests pick one by ``model``)."""
    lora = context.config.engine.lora
    if not lora:
        return
    import sys

    from forge_kernel.errors import ForgeError, StartupRefused
    from forge_plugin_train.serving import attach_from_config

    try:
        names = attach_from_config(context.engine.engine, lora)
    except ForgeError as exc:
        raise StartupRefused(str(exc)) from None
    served = ", ".join(f"{context.model_name}:{name}" for name in names)
    print(f"forge: LoRA adapters loaded: {served}", file=sys.stderr, flush=True)
