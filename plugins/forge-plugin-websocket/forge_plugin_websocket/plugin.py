"""Hook implementations: the ``websocket`` endpoint and its ``[websocket]`` config section."""

from __future__ import annotations

from forge_kernel import hookimpl


def _endpoint():
    from forge_plugin_websocket.endpoint import WebSocketEndpoint

    return WebSocketEndpoint()


@hookimpl
def forge_register_endpoints(register) -> None:
    register("websocket", _endpoint)


@hookimpl
def forge_register_config_sections(register) -> None:
    from forge_plugin_websocket.config import WebSocketConfig

    register("websocket", WebSocketConfig)
