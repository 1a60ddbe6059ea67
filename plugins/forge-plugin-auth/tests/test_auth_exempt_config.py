"""Which paths skip auth, the ``[auth]`` config section, and ``forge keys`` edge cases."""

from __future__ import annotations

from types import SimpleNamespace

import click
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from forge_plugin_auth.cli import parse_expiry
from forge_plugin_auth.config import AuthConfig
from forge_plugin_auth.keys import KeyStore
from forge_plugin_auth.middleware import AuthMiddleware, is_exempt
from forge_plugin_auth.plugin import AuthLayer

from forge_kernel.config import load_config
from forge_kernel.errors import ForgeError
from forge_kernel.testing.conformance.endpoint import MiddlewareConformance

PATHS = ["/health", "/health/ready", "/health/full", "/healthz", "/health-admin", "/healthy",
         "/metrics", "/metrics/extra", "/v1/models"]


def test_only_health_segments_are_exempt():
    assert [p for p in PATHS if is_exempt(p)] == ["/health", "/health/ready", "/health/full"]
    assert [p for p in PATHS if is_exempt(p, public_metrics=True)] == [
        "/health", "/health/ready", "/health/full", "/metrics"]


def _app() -> FastAPI:
    app = FastAPI()
    for path in PATHS:
        app.add_api_route(path, lambda: {"ok": True}, methods=["GET"])
    return app


@pytest.mark.parametrize("public_metrics", [False, True])
def test_prefix_lookalikes_need_a_key(tmp_path, public_metrics):
    store = KeyStore(tmp_path / "auth.sqlite3")
    key, _ = store.create("k")
    client = TestClient(AuthMiddleware(_app(), store, public_metrics=public_metrics))
    open_paths = {"/health", "/health/ready", "/health/full"} | (
        {"/metrics"} if public_metrics else set())
    for path in PATHS:
        expected = 200 if path in open_paths else 401
        assert client.get(path).status_code == expected, path
        assert client.get(path, headers={"Authorization": f"Bearer {key}"}).status_code == 200


def _server(tmp_path, monkeypatch, **env):
    monkeypatch.setenv("FORGE_HOME", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = load_config({}, sections={"auth": AuthConfig})
    return SimpleNamespace(config=config)


def test_config_section_from_environment(tmp_path, monkeypatch):
    server = _server(tmp_path, monkeypatch, FORGE_AUTH_PUBLIC_METRICS="true",
                     FORGE_API_KEY="static-key-for-tests")
    assert server.config.section("auth") == AuthConfig(public_metrics=True)
    wrapped = AuthLayer().wrap(_app(), server)
    assert wrapped.public_metrics
    client = TestClient(wrapped)
    assert client.get("/metrics").status_code == 200
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer static-key-for-tests"}
                      ).status_code == 200
    assert (tmp_path / "auth.sqlite3").exists()  # the store lives under FORGE_HOME


def test_metrics_need_a_key_by_default(tmp_path, monkeypatch):
    server = _server(tmp_path, monkeypatch, FORGE_API_KEY="static-key-for-tests")
    assert server.config.section("auth") == AuthConfig()
    client = TestClient(AuthLayer().wrap(_app(), server))
    assert client.get("/metrics").status_code == 401


def test_auth_off_without_any_key(tmp_path, monkeypatch):
    monkeypatch.delenv("FORGE_API_KEY", raising=False)
    server = _server(tmp_path, monkeypatch)
    client = TestClient(AuthLayer().wrap(_app(), server))
    assert client.get("/v1/models").status_code == 200


class TestAuthLayerConformance(MiddlewareConformance):
    passthrough_headers = {"Authorization": "Bearer conformance-static-key"}

    @pytest.fixture()
    def middleware(self):
        return AuthLayer()

    @pytest.fixture()
    def server(self, tmp_path, monkeypatch):
        monkeypatch.setenv("FORGE_HOME", str(tmp_path))
        return SimpleNamespace(config=SimpleNamespace(api_key="conformance-static-key",
                                                      section=lambda name: {}))


def test_zero_or_past_expiry_is_refused():
    for text in ("0s", "0d", "2001-01-01"):
        with pytest.raises(click.BadParameter):
            parse_expiry(text, now=2_000_000_000.0)
    assert parse_expiry("1s", now=1000.0) == 1001.0


def test_revoke_by_name_never_revokes_a_key_whose_id_matches(tmp_path):
    store = KeyStore(tmp_path / "auth.sqlite3")
    _, first = store.create("first")
    store.create(first.key_id)  # a key *named* like the first key's id
    revoked = store.revoke(first.key_id)
    assert revoked.name == first.key_id
    assert {k.name: k.status() for k in store.list()} == {"first": "active",
                                                          first.key_id: "revoked"}
    assert store.revoke("first").name == "first"
    _, other = store.create("other")
    assert store.revoke(other.key_id).name == "other"  # by id when no name matches
    with pytest.raises(ForgeError, match="already revoked"):
        store.revoke("other")


def test_refusals_are_logged_by_key_name_never_by_key(tmp_path):
    from structlog.testing import capture_logs

    store = KeyStore(tmp_path / "auth.sqlite3")
    right, _ = store.create("alice")
    revoked, _ = store.create("bob")
    store.revoke("bob")
    limited, _ = store.create("carol", rpm=1)
    client = TestClient(AuthMiddleware(_app(), store))
    with capture_logs() as logs:
        client.get("/v1/models")
        client.get("/v1/models", headers={"Authorization": f"Bearer {right}x"})
        client.get("/v1/models", headers={"Authorization": f"Bearer {revoked}"})
        client.get("/v1/models", headers={"Authorization": f"Bearer {limited}"})
        client.get("/v1/models", headers={"Authorization": f"Bearer {limited}"})
        client.get("/v1/models", headers={"Authorization": f"Bearer {right}"})
    refused = [(e["status"], e["reason"], e["key_name"]) for e in logs
               if e["event"] == "auth refused"]
    assert refused == [(401, "missing", None), (401, "invalid", None), (401, "revoked", "bob"),
                       (429, "rate_limited", "carol")]
    assert all(e["path"] == "/v1/models" for e in logs)
    text = repr(logs)
    assert not any(k in text or k.split("_")[-1] in text for k in (right, revoked, limited))


def test_open_server_is_announced(tmp_path, monkeypatch):
    from structlog.testing import capture_logs

    monkeypatch.delenv("FORGE_API_KEY", raising=False)
    server = _server(tmp_path, monkeypatch)
    with capture_logs() as logs:
        AuthLayer().wrap(_app(), server)
    assert [e["log_level"] for e in logs] == ["warning"]
    assert "not authenticated" in logs[0]["event"]


def test_streamed_usage_counts_toward_the_token_limit(tmp_path):
    """A streaming response reports its usage from the body iterator (a task of its own in
    recent Starlette): the listener set around the request must still receive it."""
    from fastapi.responses import StreamingResponse

    from forge_kernel.usage import report_usage

    app = FastAPI()

    @app.get("/v1/stream")
    async def stream():
        async def body():
            yield b"data: 1\n\n"
            report_usage(3, 4)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    store = KeyStore(tmp_path / "auth.sqlite3")
    key, _ = store.create("streamer", tpm=10)
    client = TestClient(AuthMiddleware(app, store))
    headers = {"Authorization": f"Bearer {key}"}
    codes = [client.get("/v1/stream", headers=headers).status_code for _ in range(3)]
    assert codes == [200, 200, 429]  # 7 tokens, then 14 >= 10
