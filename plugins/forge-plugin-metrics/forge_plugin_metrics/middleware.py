"""ASGI middleware counting every HTTP request and WebSocket connection by route and status."""

from __future__ import annotations

import time
from typing import Any

from forge_plugin_metrics.collectors import ServerMetrics, route_of


class MetricsMiddleware:
    """Outermost layer: it also sees requests that auth refuses."""

    def __init__(self, app: Any, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_and_watch(message: dict[str, Any]) -> None:
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                status["code"] = message["status"]
            elif kind == "websocket.accept":
                status["code"] = 101
            elif kind == "websocket.close" and status["code"] == 500:
                status["code"] = 403  # closed before accept: refused handshake
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            method = scope.get("method", "WEBSOCKET")
            elapsed = time.perf_counter() - started if scope["type"] == "http" else None
            self.metrics.record_http(route_of(scope), method, status["code"], elapsed)
