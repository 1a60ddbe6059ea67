"""The ``websocket`` endpoint: mounts ``/v1/ws`` (and ``/v1/ws/stats``).

(``WebSocket`` is imported at module level: FastAPI resolves the route's string annotation in
this module's globals.)"""

from __future__ import annotations

from typing import Any

from fastapi import WebSocket

from forge_kernel.interfaces.endpoint import Endpoint


class WebSocketEndpoint(Endpoint):
    """Mounts the WebSocket route at ``[websocket] path`` and its counters at ``{path}/stats``."""

    name = "websocket"

    def mount(self, app: Any, server: Any) -> None:
        from forge_plugin_websocket.config import WebSocketConfig
        from forge_plugin_websocket.connection import Connection
        from forge_plugin_websocket.stats import EndpointStats

        config = getattr(server, "config", None)
        settings = WebSocketConfig.from_section(config.section("websocket") if config else None)
        stats = EndpointStats()

        async def websocket_route(websocket: WebSocket) -> None:
            await Connection(websocket, server, settings, stats).serve()

        async def websocket_stats() -> dict[str, Any]:
            """Open connections, running generations and send-queue depths (debug view)."""
            return {**stats.snapshot(), "max_generations": settings.max_generations,
                    "send_queue_size": settings.send_queue_size}

        app.add_api_websocket_route(settings.path, websocket_route, name="forge_websocket")
        app.add_api_route(settings.path.rstrip("/") + "/stats", websocket_stats,
                          methods=["GET"], name="forge_websocket_stats")
