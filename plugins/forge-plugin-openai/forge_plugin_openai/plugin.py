"""Hook implementations: the ``openai`` endpoint and the ``serve`` command."""

from __future__ import annotations

from forge_kernel import hookimpl


def _endpoint():
    from forge_plugin_openai.endpoint import OpenAIEndpoint

    return OpenAIEndpoint()


@hookimpl
def forge_register_endpoints(register) -> None:
    register("openai", _endpoint)


@hookimpl
def forge_register_commands(cli) -> None:
    from forge_plugin_openai.serve import serve_command

    cli.add_command(serve_command)
