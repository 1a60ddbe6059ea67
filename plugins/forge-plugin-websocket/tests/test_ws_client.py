"""The client against a tiny scripted ``websockets`` server (no model): handshake headers,
routing of interleaved generations, cancel on early exit, errors, ping."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from forge_plugin_websocket.client import ForgeWebSocket, ForgeWebSocketError, collect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def _scripted(connection) -> None:
    """Answers each generation with two interleavable deltas and done; ``fail`` -> error."""
    connection.seen_headers = dict(connection.request.headers)
    with contextlib.suppress(ConnectionClosed):
        await _answer(connection)


async def _answer(connection) -> None:
    async for raw in connection:
        msg = json.loads(raw)
        if msg["type"] == "ping":
            await connection.send(json.dumps({"type": "pong", "data": msg.get("data")}))
        elif msg["type"] == "cancel":
            connection.cancelled.append(msg["id"])
            await connection.send(json.dumps({"type": "cancelled", "id": msg["id"],
                                              "finish_reason": "abort", "choices": [],
                                              "usage": {}}))
        elif msg["id"] == "fail":
            await connection.send(json.dumps({"type": "error", "id": "fail", "error": {
                "message": "bad", "type": "invalid_request_error", "param": "n",
                "code": "invalid_value"}}))
        else:
            for text in (msg["id"] + ":", str(msg.get("max_tokens"))):
                await connection.send(json.dumps({"type": "delta", "id": msg["id"],
                                                  "index": 0, "text": text}))
                await asyncio.sleep(0.01)
            if msg["id"] != "endless":
                await connection.send(json.dumps({
                    "type": "done", "id": msg["id"], "finish_reason": "length",
                    "choices": [{"index": 0, "finish_reason": "length"}],
                    "usage": {"completion_tokens": 2}}))


@pytest.fixture()
async def scripted():
    connections = []

    async def handler(connection):
        connection.cancelled = []
        connections.append(connection)
        await _scripted(connection)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/v1/ws", connections


async def test_bearer_key_on_handshake_and_concurrent_routing(scripted):
    url, connections = scripted
    async with ForgeWebSocket(url, api_key="fk_test") as ws:
        results = await asyncio.gather(*(collect(ws.completion(f"g{i}", "p", max_tokens=i))
                                         for i in range(5)))
        assert await ws.ping() < 5
    assert connections[0].seen_headers["authorization"] == "Bearer fk_test"
    assert [r.text for r in results] == [f"g{i}:{i}" for i in range(5)]
    assert all(r.finish_reason == "length" and not r.cancelled for r in results)


async def test_error_raises_and_the_connection_stays_usable(scripted):
    url, _ = scripted
    async with ForgeWebSocket(url.replace("ws://", "http://")) as ws:
        with pytest.raises(ForgeWebSocketError) as info:
            await collect(ws.chat("fail", [{"role": "user", "content": "x"}]))
        assert info.value.code == "invalid_value" and info.value.param == "n"
        assert info.value.id == "fail"
        assert (await collect(ws.chat("ok", []))).text == "ok:None"


async def test_leaving_early_cancels(scripted):
    url, connections = scripted
    async with ForgeWebSocket(url) as ws:
        events = ws.completion("endless", "p")
        async for _event in events:
            break
        await events.aclose()
        reply = await ws.next_unrouted(timeout=5)
        while reply["type"] == "delta":  # sent before the cancel arrived: no consumer left
            reply = await ws.next_unrouted(timeout=5)
        assert reply["type"] == "cancelled" and reply["id"] == "endless"
        assert connections[0].cancelled == ["endless"]
        first = ws.completion("dup", "p")
        await first.__anext__()
        with pytest.raises(ValueError):  # the id is running on this connection
            await ws.completion("dup", "p").__anext__()
        await first.aclose()
