"""Hook implementations: the ``ggml`` quantizer and the ``forge quantize`` command."""

from __future__ import annotations

from forge_kernel import hookimpl


def _create():
    from forge_plugin_ggml_quant.quantizer import GGMLQuantizer

    return GGMLQuantizer()


@hookimpl
def forge_register_quantizers(register) -> None:
    register("ggml", _create)


@hookimpl
def forge_register_commands(cli) -> None:
    from forge_plugin_ggml_quant.cli import quantize_command

    cli.add_command(quantize_command)
