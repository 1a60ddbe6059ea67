"""The endpoint as ``forge serve`` mounts it (uvicorn, ``websockets-sansio``) behind the auth
middleware, with a fake engine: the client's ``Authorization: Bearer`` handshake header, the
``[websocket]`` settings and the stats route. No model: fast."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import httpx
import pytest
import uvicorn
import websockets
from fastapi import FastAPI
from forge_plugin_websocket.client import ForgeWebSocket, collect
from forge_plugin_websocket.config import WebSocketConfig
from forge_plugin_websocket.endpoint import WebSocketEndpoint
from ws_fakes import FakeEngine, fake_server, token_text

KeyStore = pytest.importorskip("forge_plugin_auth.keys").KeyStore
AuthMiddleware = pytest.importorskip("forge_plugin_auth.middleware").AuthMiddleware
KEY = "static-secret-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app = FastAPI()
    context = fake_server(FakeEngine())
    context.config = SimpleNamespace(section=lambda name: WebSocketConfig(path="/ws"))
    WebSocketEndpoint().mount(app, context)
    wrapped = AuthMiddleware(app, KeyStore(tmp_path_factory.mktemp("a") / "auth.sqlite3"),
                             static_key=KEY)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(wrapped, log_level="warning", ws="websockets-sansio"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    yield port
    srv.should_exit = True
    thread.join(5)


async def test_client_sends_the_api_key_on_the_handshake(server):
    async with ForgeWebSocket(f"ws://127.0.0.1:{server}/ws", api_key=KEY) as ws:
        result = await collect(ws.completion("a", "abc", max_tokens=3, n=2))
        stats = httpx.get(f"http://127.0.0.1:{server}/ws/stats",
                          headers={"Authorization": f"Bearer {KEY}"}).json()
        assert stats["connections"] == 1 and stats["per_connection"][0]["messages_sent"] >= 3
    assert result.texts == ["".join(token_text(i) for i in range(3))] * 2
    assert result.usage["completion_tokens"] == 6


@pytest.mark.parametrize("key", [None, "wrong"])
async def test_handshake_without_the_right_key_is_refused(server, key):
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        async with ForgeWebSocket(f"ws://127.0.0.1:{server}/ws", api_key=key):
            pass
    assert info.value.response.status_code == 401
