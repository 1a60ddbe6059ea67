"""ASGI middleware counting every HTTP request and WebSocket connection by route and status."""

from __future__ import annotations

import time
from typing import Any

from forge_plugin_metrics.collectors import ServerMetrics, flat_routes, method_of, route_of


def find_routes_app(app: Any) -> Any:
    """The innermost application with ``routes`` (the FastAPI app), following the ``.app``
    attribute middlewares conventionally keep; ``None`` if the chain ends without one."""
    seen = 0
    while app is not None and seen < 64:
        if hasattr(app, "routes"):
            return app
        app, seen = getattr(app, "app", None), seen + 1
    return None


class MetricsMiddleware:
    """Outermost layer: it also sees requests that inner layers (auth) refuse.

    ``routes_app`` is the application whose ``routes`` label requests that did not reach the
    router (by default found through the ``.app`` chain of ``app``).
    """

    def __init__(self, app: Any, metrics: ServerMetrics, routes_app: Any = None) -> None:
        self.app = app
        self.metrics = metrics
        self._routes_app = routes_app
        self._flat: tuple[tuple[int, ...], list[Any]] = ((), [])

    def _routes(self) -> list[Any]:
        """The app's routes, flattened once per set of routes (plugins may add routes late)."""
        if self._routes_app is None:
            self._routes_app = find_routes_app(self.app)
        routes = list(getattr(self._routes_app, "routes", ()))
        ident = tuple(map(id, routes))
        if ident != self._flat[0]:
            self._flat = (ident, flat_routes(routes))
        return self._flat[1]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        original = dict(scope)  # the router rewrites scope (path_params, root_path of mounts)
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
            elapsed = time.perf_counter() - started if scope["type"] == "http" else None
            known = getattr(scope.get("route"), "path", None)  # set by the router
            route = known or route_of(original, self._routes())
            self.metrics.record_http(route, method_of(scope), status["code"], elapsed)
