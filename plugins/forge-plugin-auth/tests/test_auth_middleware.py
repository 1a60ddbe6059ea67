"""The auth middleware on a real uvicorn server on 127.0.0.1: HTTP and WebSocket matrix.

The app behind the middleware is a plain FastAPI app with an HTTP route, a streaming route, a
WebSocket route and a health route, standing in for "any endpoint a plugin adds"; the full
``forge serve`` matrix lives in the integration tests.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import httpx
import pytest
import uvicorn
import websockets
from fastapi import FastAPI, WebSocket
from forge_plugin_auth.keys import KeyStore
from forge_plugin_auth.limits import RateLimiter
from forge_plugin_auth.middleware import AuthMiddleware

from forge_kernel.usage import report_usage


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/things")
    async def things() -> dict:
        report_usage(7, 3)  # as a generation endpoint would
        return {"ok": True}

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.websocket("/v1/ws")
    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        await socket.send_text(await socket.receive_text())
        await socket.close()

    return app


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = KeyStore(tmp_path_factory.mktemp("auth") / "auth.sqlite3")
    keys = {
        "right": store.create("right")[0],
        "limited": store.create("limited", rpm=2)[0],
        "tokens": store.create("tokens", tpm=25)[0],
        "revoked": store.create("revoked")[0],
        "expired": store.create("expired", expires=time.time() + 0.5)[0],
    }
    store.revoke("revoked")
    clock = FakeClock()
    app = AuthMiddleware(_app(), store, static_key="static-secret-key",
                         limiter=RateLimiter(clock))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="info", ws="websockets-sansio")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    time.sleep(0.6)  # let the "expired" key expire
    yield {"url": f"http://127.0.0.1:{port}", "ws": f"ws://127.0.0.1:{port}", "keys": keys,
           "clock": clock}
    srv.should_exit = True
    thread.join(5)


def _headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


CASES = {
    "none": (None, 401, "You didn't provide an API key"),
    "wrong": ("fk_00000000_thisisnotarealkeyatallbutlongenough", 401, "Incorrect API key"),
    "malformed": ("garbage", 401, "Incorrect API key"),
    "revoked": ("revoked", 401, "revoked"),
    "expired": ("expired", 401, "expired"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_http_refusals_are_openai_errors(server, case):
    key, status, message = CASES[case]
    key = server["keys"].get(key, key)
    response = httpx.get(server["url"] + "/v1/things", headers=_headers(key))
    assert response.status_code == status
    error = response.json()["error"]
    assert message in error["message"]
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}
    assert response.headers["www-authenticate"] == "Bearer"
    if key:
        assert key not in response.text


@pytest.mark.parametrize("case", sorted(CASES))
def test_websocket_handshake_refusals(server, case):
    key, status, _ = CASES[case]
    key = server["keys"].get(key, key)

    async def attempt() -> int:
        try:
            async with websockets.connect(server["ws"] + "/v1/ws",
                                          additional_headers=_headers(key)):
                return 101
        except websockets.exceptions.InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(attempt()) == status


def test_right_key_static_key_and_health(server):
    for key in (server["keys"]["right"], "static-secret-key"):
        assert httpx.get(server["url"] + "/v1/things", headers=_headers(key)).json() == {"ok": True}

    async def echo() -> str:
        async with websockets.connect(server["ws"] + "/v1/ws",
                                      additional_headers=_headers(server["keys"]["right"])) as ws:
            await ws.send("hello")
            return await ws.recv()

    assert asyncio.run(echo()) == "hello"
    assert httpx.get(server["url"] + "/health").status_code == 200  # exempt


def test_request_limit_429_with_retry_after_then_recovers(server):
    key = server["keys"]["limited"]
    ok = [httpx.get(server["url"] + "/v1/things", headers=_headers(key)) for _ in range(2)]
    assert [r.status_code for r in ok] == [200, 200]
    refused = httpx.get(server["url"] + "/v1/things", headers=_headers(key))
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    server["clock"].now += 61
    assert httpx.get(server["url"] + "/v1/things", headers=_headers(key)).status_code == 200


def test_token_limit_counts_reported_usage(server):
    key = server["keys"]["tokens"]
    # each request reports 10 tokens; the limit is 25 per minute
    codes = [httpx.get(server["url"] + "/v1/things", headers=_headers(key)).status_code
             for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    server["clock"].now += 61
    assert httpx.get(server["url"] + "/v1/things", headers=_headers(key)).status_code == 200


def test_keys_never_logged(server, caplog):
    caplog.set_level(logging.DEBUG)
    key = server["keys"]["right"]
    httpx.get(server["url"] + "/v1/things", headers=_headers(key))
    httpx.get(server["url"] + "/v1/things", headers=_headers(key + "x"))
    assert key not in caplog.text
