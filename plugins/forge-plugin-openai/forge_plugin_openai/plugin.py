"""Hook implementation: the ``openai`` endpoint (``forge serve`` itself is the kernel's)."""

from __future__ import annotations

from forge_kernel import hookimpl


def _endpoint():
    from forge_plugin_openai.endpoint import OpenAIEndpoint

    return OpenAIEndpoint()


@hookimpl
def forge_register_endpoints(register) -> None:
    register("openai", _endpoint)

