"""The Prometheus metrics of one server (a private registry: tests may run several servers).

HTTP metrics are recorded by the middleware, request latencies by the engine observer (once per
finished request, never per token), and engine gauges (running, waiting, KV usage,
preemptions, speculative decoding) are read from ``engine.stats()`` at scrape time.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from forge_kernel.engine.types import RequestMetrics

_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
                    2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
_ITL_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0,
                2.5)


class _EngineCollector:
    """Reads live engine state when Prometheus scrapes."""

    def __init__(self, engine_getter) -> None:
        self._engine = engine_getter

    def collect(self):
        engine = self._engine()
        stats = engine.stats() if engine is not None else None
        running = GaugeMetricFamily("forge_num_requests_running",
                                    "Sequences in the running batch.")
        waiting = GaugeMetricFamily("forge_num_requests_waiting",
                                    "Sequences waiting for admission.")
        kv = GaugeMetricFamily("forge_kv_cache_usage_ratio",
                               "Fraction of KV-cache capacity held by running sequences.")
        preempt = CounterMetricFamily("forge_preemptions",
                                      "Sequences preempted (recomputed) for lack of KV space.")
        if stats is not None:
            running.add_metric([], getattr(stats, "num_running", 0))
            waiting.add_metric([], getattr(stats, "num_waiting", 0))
            kv.add_metric([], getattr(stats, "kv_usage", 0.0))
            preempt.add_metric([], getattr(stats, "num_preemptions", 0))
        yield from (running, waiting, kv, preempt)
        yield from _speculative(stats)


def _speculative(stats):
    """Speculative decoding (forge-plugin-speculative): draft tokens verified and accepted,
    the acceptance rate and the tokens a drafted sequence gained per step (1 = no gain)."""
    drafted = getattr(stats, "spec_draft_tokens", 0)
    accepted = getattr(stats, "spec_accepted_tokens", 0)
    rows = getattr(stats, "spec_rows", 0)
    for kind, name, doc, value in (
            (CounterMetricFamily, "forge_spec_decode_draft_tokens",
             "Speculative draft tokens verified.", drafted),
            (CounterMetricFamily, "forge_spec_decode_accepted_tokens",
             "Speculative draft tokens accepted.", accepted),
            (GaugeMetricFamily, "forge_spec_decode_acceptance_ratio",
             "Accepted / verified draft tokens since start (0 before any draft).",
             accepted / drafted if drafted else 0.0),
            (GaugeMetricFamily, "forge_spec_decode_tokens_per_step",
             "Tokens per step of sequences that carried a draft (accepted + 1 each step).",
             (accepted + rows) / rows if rows else 0.0)):
        family = kind(name, doc)
        if stats is not None:
            family.add_metric([], value)
        yield family


class ServerMetrics:
    """All metrics of one server, named ``forge_*``."""

    def __init__(self, engine_getter=lambda: None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "forge_http_requests", "HTTP requests and WebSocket connections by route and status.",
            ["route", "method", "status"], registry=r)
        self.http_duration = Histogram(
            "forge_http_request_duration_seconds", "Time to answer an HTTP request.",
            ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("forge_time_to_first_token_seconds",
                              "Arrival to first generated token.", buckets=_LATENCY_BUCKETS,
                              registry=r)
        self.itl = Histogram("forge_inter_token_latency_seconds",
                             "Time between consecutive generated tokens.", buckets=_ITL_BUCKETS,
                             registry=r)
        self.e2e = Histogram("forge_e2e_request_latency_seconds",
                             "Arrival to last token of a request.", buckets=_LATENCY_BUCKETS,
                             registry=r)
        self.prompt_tokens = Counter("forge_prompt_tokens", "Prompt tokens processed.",
                                     registry=r)
        self.generation_tokens = Counter("forge_generation_tokens", "Tokens generated.",
                                         registry=r)
        self.finished = Counter("forge_requests_finished", "Finished requests by reason.",
                                ["finish_reason"], registry=r)
        r.register(_EngineCollector(engine_getter))
        self.app: Any = None
        """The FastAPI app (set when the health endpoint mounts): its routes label requests
        that never reached its router."""

    def on_request_finished(self, metrics: RequestMetrics) -> None:
        """Engine observer callback: one call per finished request."""
        if metrics.time_to_first_token is not None:
            self.ttft.observe(metrics.time_to_first_token)
        for gap in metrics.inter_token_latencies:
            self.itl.observe(gap)
        self.e2e.observe(metrics.e2e_latency)
        self.prompt_tokens.inc(metrics.prompt_tokens)
        self.generation_tokens.inc(metrics.completion_tokens)
        self.finished.labels(metrics.finish_reason or "unknown").inc()

    def record_http(self, route: str, method: str, status: int, seconds: float | None) -> None:
        self.http_requests.labels(route, method, str(status)).inc()
        if seconds is not None:
            self.http_duration.labels(route).observe(seconds)


UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "WEBSOCKET"})


def method_of(scope: dict[str, Any]) -> str:
    """The request method, or ``OTHER`` for any non-standard one (a client must not be able to
    create label values at will)."""
    method = "WEBSOCKET" if scope["type"] == "websocket" else str(scope.get("method", "")).upper()
    return method if method in _METHODS else "OTHER"


def flat_routes(routes: Any) -> list[Any]:
    """``routes`` (an app's ``routes``) with included routers expanded into their routes.

    Recent FastAPI keeps ``include_router`` lazily: ``app.routes`` then holds router entries
    whose ``matches`` does not say which route matched; ``fastapi.routing.iter_route_contexts``
    (what FastAPI's own OpenAPI generation uses) yields every route with its full path. Older
    FastAPI and plain Starlette have flat route lists already.
    """
    routes = list(routes)
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        return routes
    try:
        return list(iter_route_contexts(routes))
    except Exception:  # an unexpected route type: fall back to the list as it is
        return routes


def route_of(scope: dict[str, Any], routes: Any = ()) -> str:
    """The route template (``/v1/models/{model_id:path}``), never the raw path, so label
    cardinality stays bounded; paths no route matches share one label.

    The router records the matched route in ``scope["route"]``. A request that never reached
    the router (refused by auth, a 429) or one served by a plain Starlette route that does not
    record itself (``/openapi.json``, ``/docs``) is matched here against ``routes`` (flat, see
    :func:`flat_routes`), so a 401 on ``/v1/chat/completions`` is counted under that route.
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return path
    from starlette.routing import Match

    partial = None
    for candidate in routes:
        try:
            match, child = candidate.matches(scope)
        except Exception:  # a route type that cannot judge this scope does not match it
            continue
        if match is Match.NONE:
            continue
        path = getattr(child.get("route"), "path", None) or getattr(candidate, "path", None)
        if match is Match.FULL:
            return path or UNMATCHED
        if partial is None:
            partial = path  # e.g. right path, wrong method: a 405
    return partial or UNMATCHED
