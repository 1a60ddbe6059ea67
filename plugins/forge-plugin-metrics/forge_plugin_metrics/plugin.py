"""Hook implementations: the metrics middleware and the health/metrics endpoint."""

from __future__ import annotations

import os
import time
from typing import Any

from forge_kernel import hookimpl
from forge_kernel.interfaces.endpoint import Endpoint, Middleware

_per_server: dict[int, Any] = {}


def metrics_for(server: Any):
    """The one :class:`ServerMetrics` of ``server``, shared by the middleware and endpoint."""
    from forge_plugin_metrics.collectors import ServerMetrics

    key = id(server)
    if key not in _per_server:
        metrics = ServerMetrics(lambda: getattr(server, "engine", None))
        engine = getattr(server, "engine", None)
        if engine is not None and hasattr(engine, "add_observer"):
            engine.add_observer(metrics.on_request_finished)
        _per_server[key] = metrics
    return _per_server[key]


class MetricsLayer(Middleware):
    name = "metrics"
    order = 10  # outermost: counts requests that inner layers (auth) refuse

    def wrap(self, app: Any, server: Any) -> Any:
        from forge_plugin_metrics.middleware import MetricsMiddleware

        metrics = metrics_for(server)
        return MetricsMiddleware(app, metrics, routes_app=metrics.app)


class HealthEndpoint(Endpoint):
    """``/health``, ``/health/ready``, ``/health/full`` and ``/metrics``."""

    name = "health"

    def mount(self, app: Any, server: Any) -> None:
        from fastapi.responses import JSONResponse, Response
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        metrics = metrics_for(server)
        metrics.app = app
        started = time.time()

        def engine_state() -> tuple[bool, str]:
            engine = getattr(server, "engine", None)
            if engine is None:
                return False, "model not loaded"
            alive = engine.is_alive() if hasattr(engine, "is_alive") else True
            return (True, "ok") if alive else (False, "engine loop not running")

        @app.get("/health", include_in_schema=False)
        async def health() -> dict[str, str]:
            return {"status": "ok"}

        @app.get("/health/ready", include_in_schema=False)
        async def ready():
            ok, reason = engine_state()
            return JSONResponse({"status": "ready" if ok else "unavailable", "reason": reason},
                                status_code=200 if ok else 503)

        @app.get("/health/full", include_in_schema=False)
        async def full():
            import psutil

            from forge_plugin_metrics.report import plugin_report

            ok, reason = engine_state()
            engine = getattr(server, "engine", None)
            stats = engine.stats() if engine is not None else None
            process = psutil.Process(os.getpid())
            body = {
                "status": "ready" if ok else "unavailable",
                "reason": reason,
                "model": getattr(server, "model_name", None),
                "uptime_seconds": round(time.time() - started, 3),
                "memory": {"rss_bytes": process.memory_info().rss,
                           "system_available_bytes": psutil.virtual_memory().available},
                "queue": {"running": getattr(stats, "num_running", None),
                          "waiting": getattr(stats, "num_waiting", None)},
                "kv_cache": {"usage": getattr(stats, "kv_usage", None),
                             "capacity_tokens": getattr(stats, "kv_capacity_tokens", None),
                             "free_tokens": getattr(stats, "kv_free_tokens", None),
                             "preemptions": getattr(stats, "num_preemptions", None)},
                "plugins": plugin_report(getattr(server, "host", None)),
            }
            return JSONResponse(body, status_code=200 if ok else 503)

        @app.get("/metrics", include_in_schema=False)
        async def prometheus_metrics() -> Response:
            return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@hookimpl
def forge_register_endpoints(register) -> None:
    register("health", HealthEndpoint)
    register("metrics", MetricsLayer)
