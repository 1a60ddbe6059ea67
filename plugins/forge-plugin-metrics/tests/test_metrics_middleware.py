"""``MetricsMiddleware`` on a small FastAPI app (Starlette's TestClient): route templates as
labels, statuses of HTTP requests and WebSocket handshakes, requests refused by an inner layer,
and the plugin's ``Middleware`` / ``Endpoint`` contracts."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from fastapi import APIRouter, FastAPI, WebSocket
from fastapi.testclient import TestClient
from forge_plugin_metrics.collectors import ServerMetrics
from forge_plugin_metrics.middleware import MetricsMiddleware, find_routes_app
from forge_plugin_metrics.plugin import HealthEndpoint, MetricsLayer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from forge_kernel.engine.types import EngineStats
from forge_kernel.testing.conformance.endpoint import EndpointConformance, MiddlewareConformance


def requests_by_labels(metrics: ServerMetrics) -> dict[tuple[str, str, str], float]:
    """``{(route, method, status): count}`` of ``forge_http_requests_total``."""
    text = generate_latest(metrics.registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "forge_http_requests_total":
                out[(s.labels["route"], s.labels["method"], s.labels["status"])] = s.value
    return out


class Refuse:
    """Stands in for the auth middleware: refuses ``/private/...`` before the router runs,
    over HTTP (401) and on the WebSocket handshake (denial response or close before accept)."""

    def __init__(self, app, denial_extension: bool = True) -> None:
        self.app = app
        self.denial_extension = denial_extension

    async def __call__(self, scope, receive, send) -> None:
        if not scope["path"].startswith("/private"):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": {"message": "no"}}).encode()
        headers = [(b"content-type", b"application/json")]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await receive()
        if self.denial_extension:
            await send({"type": "websocket.http.response.start", "status": 401,
                        "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})


def make_app() -> FastAPI:
    app = FastAPI()
    router = APIRouter(prefix="/private")  # included: lazily, in recent FastAPI versions

    @router.post("/{name}")
    async def private(name: str) -> dict:
        return {"name": name}

    @router.websocket("/ws")
    async def private_ws(socket: WebSocket) -> None:
        await socket.accept()
        await socket.close()

    app.include_router(router)

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict:
        return {"id": item_id}

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("boom")

    @app.websocket("/ws/{room}")
    async def ws(socket: WebSocket, room: str) -> None:
        await socket.accept()
        await socket.send_text(room)
        await socket.close()

    @app.websocket("/closed")
    async def closed(socket: WebSocket) -> None:
        await socket.close()  # before accept: a refused handshake

    return app


@pytest.fixture()
def metrics() -> ServerMetrics:
    return ServerMetrics()


@pytest.fixture()
def client(metrics) -> TestClient:
    app = make_app()
    wrapped = MetricsMiddleware(Refuse(app), metrics)
    return TestClient(wrapped, raise_server_exceptions=False)


def test_route_templates_not_raw_paths(client, metrics):
    for i in range(25):
        assert client.get(f"/items/{i}").status_code == 200
    assert client.get("/items/not-a-number").status_code == 422
    assert requests_by_labels(metrics) == {("/items/{item_id}", "GET", "200"): 25,
                                           ("/items/{item_id}", "GET", "422"): 1}


def test_unknown_paths_share_one_label(client, metrics):
    for i in range(10):
        assert client.get(f"/random/{i}").status_code == 404
    assert requests_by_labels(metrics) == {("unmatched", "GET", "404"): 10}


def test_wrong_method_is_labelled_with_the_route(client, metrics):
    assert client.post("/items/3").status_code == 405
    assert client.request("BREW", "/items/3").status_code == 405
    assert requests_by_labels(metrics) == {("/items/{item_id}", "POST", "405"): 1,
                                           ("/items/{item_id}", "OTHER", "405"): 1}


def test_request_refused_before_the_router_keeps_its_route(client, metrics):
    for name in ("a", "b", "c"):
        assert client.post(f"/private/{name}").status_code == 401
    assert requests_by_labels(metrics) == {("/private/{name}", "POST", "401"): 3}


def test_included_router_routes_reached_and_refused(metrics):
    client = TestClient(MetricsMiddleware(Refuse(make_app()), metrics))
    client.post("/private/a")  # refused: labelled by matching the included router's routes
    inner = TestClient(MetricsMiddleware(make_app(), metrics))
    assert inner.post("/private/b").json() == {"name": "b"}  # reached: the router's label
    assert inner.get("/private/b").status_code == 405
    assert requests_by_labels(metrics) == {("/private/{name}", "POST", "401"): 1,
                                           ("/private/{name}", "POST", "200"): 1,
                                           ("/private/{name}", "GET", "405"): 1}


def test_docs_routes_are_labelled(client, metrics):
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200
    assert requests_by_labels(metrics) == {("/openapi.json", "GET", "200"): 1,
                                           ("/docs", "GET", "200"): 1}


def test_routes_added_after_the_first_request_are_labelled(metrics):
    app = make_app()
    client = TestClient(MetricsMiddleware(Refuse(app), metrics))
    client.post("/private/a")
    late = APIRouter(prefix="/private/late")

    @late.get("/{n}")
    async def n(n: int) -> dict:
        return {}

    app.include_router(late)
    client.get("/private/late/1")
    assert requests_by_labels(metrics) == {("/private/{name}", "POST", "401"): 1,
                                           ("/private/late/{n}", "GET", "401"): 1}


def test_exception_is_counted_as_500(client, metrics):
    assert client.get("/boom").status_code == 500
    assert requests_by_labels(metrics) == {("/boom", "GET", "500"): 1}


def test_durations_are_observed_for_http_only(client, metrics):
    client.get("/items/1")
    with client.websocket_connect("/ws/lobby") as ws:
        assert ws.receive_text() == "lobby"
    text = generate_latest(metrics.registry).decode()
    counts = {tuple(s.labels.items()): s.value
              for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == "forge_http_request_duration_seconds_count"}
    assert counts == {(("route", "/items/{item_id}"),): 1}


def test_websocket_statuses(client, metrics):
    with client.websocket_connect("/ws/one") as ws:
        assert ws.receive_text() == "one"
    with client.websocket_connect("/ws/two") as ws:
        assert ws.receive_text() == "two"
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect("/private/ws"):
            pass
    assert denied.value.status_code == 401
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/closed"):
            pass
    assert requests_by_labels(metrics) == {("/ws/{room}", "WEBSOCKET", "101"): 2,
                                           ("/private/ws", "WEBSOCKET", "401"): 1,
                                           ("/closed", "WEBSOCKET", "403"): 1}


def test_websocket_refused_by_close_without_denial_extension(metrics):
    client = TestClient(MetricsMiddleware(Refuse(make_app(), denial_extension=False), metrics))
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/private/ws"):
            pass
    assert requests_by_labels(metrics) == {("/private/ws", "WEBSOCKET", "403"): 1}


def test_routes_found_through_the_middleware_chain():
    app = make_app()
    assert find_routes_app(Refuse(Refuse(app))) is app
    assert find_routes_app(object()) is None


def test_lifespan_passes_through(metrics):
    with TestClient(MetricsMiddleware(make_app(), metrics)) as client:
        assert client.get("/items/1").status_code == 200
    assert requests_by_labels(metrics) == {("/items/{item_id}", "GET", "200"): 1}


# -- the plugin's classes through the kernel's contracts ------------------------------------

class FakeEngine:
    def __init__(self, alive: bool = True) -> None:
        self.alive = alive
        self.observers = []
        self.snapshot = EngineStats(num_running=1, num_waiting=2, kv_usage=0.5,
                                    num_preemptions=3, kv_capacity_tokens=512,
                                    kv_free_tokens=256)

    def stats(self) -> EngineStats:
        return self.snapshot

    def is_alive(self) -> bool:
        return self.alive

    def add_observer(self, callback) -> None:
        self.observers.append(callback)


def fake_server(engine=None):
    return SimpleNamespace(engine=engine, model_name="tiny", host=None, config=None)


class TestMetricsLayerConformance(MiddlewareConformance):
    @pytest.fixture()
    def middleware(self):
        return MetricsLayer()

    @pytest.fixture()
    def server(self):
        return fake_server(FakeEngine())


class TestHealthEndpointConformance(EndpointConformance):
    paths = ["/health", "/health/ready", "/health/full", "/metrics"]

    @pytest.fixture()
    def endpoint(self):
        return HealthEndpoint()

    @pytest.fixture()
    def server(self):
        return fake_server(FakeEngine())


def serve(server) -> TestClient:
    """Mount and wrap like ``forge_kernel.server.build_app`` does."""
    app = FastAPI()
    HealthEndpoint().mount(app, server)

    @app.get("/v1/things/{thing}")
    async def thing(thing: str) -> dict:
        return {"thing": thing}

    return TestClient(MetricsLayer().wrap(app, server))


def test_health_probes():
    engine = FakeEngine()
    client = serve(fake_server(engine))
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    full = client.get("/health/full")
    assert full.status_code == 200
    body = full.json()
    assert body["model"] == "tiny"
    assert body["queue"] == {"running": 1, "waiting": 2}
    assert body["kv_cache"] == {"usage": 0.5, "capacity_tokens": 512, "free_tokens": 256,
                                "preemptions": 3}
    assert body["memory"]["rss_bytes"] > 0 and body["memory"]["system_available_bytes"] > 0
    assert isinstance(body["plugins"], list)
    engine.alive = False  # the engine loop died: not ready, but still live
    assert client.get("/health").status_code == 200
    not_ready = client.get("/health/ready")
    assert not_ready.status_code == 503
    assert not_ready.json() == {"status": "unavailable", "reason": "engine loop not running"}
    assert client.get("/health/full").status_code == 503


def test_not_ready_without_a_model():
    client = serve(fake_server(None))
    response = client.get("/health/ready")
    assert response.status_code == 503 and response.json()["reason"] == "model not loaded"


def test_plugin_report_uses_the_servers_host():
    status = SimpleNamespace(name="x")  # not a dataclass: reported by name
    host = SimpleNamespace(statuses=[{"name": "auth", "status": "loaded"}, status])
    server = fake_server(FakeEngine())
    server.host = host
    plugins = serve(server).get("/health/full").json()["plugins"]
    assert plugins == [{"name": "auth", "status": "loaded"}, {"name": "x"}]


def test_metrics_endpoint_counts_routes_and_engine_observer():
    engine = FakeEngine()
    server = fake_server(engine)
    client = serve(server)
    assert client.get("/v1/things/a").status_code == 200
    assert client.get("/v1/things/b").status_code == 200
    assert len(engine.observers) == 1  # ServerMetrics.on_request_finished, registered once
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    key = ("forge_http_requests_total",
           (("method", "GET"), ("route", "/v1/things/{thing}"), ("status", "200")))
    assert samples[key] == 2
    assert samples[("forge_num_requests_waiting", ())] == 2
    assert samples[("forge_kv_cache_usage_ratio", ())] == 0.5
