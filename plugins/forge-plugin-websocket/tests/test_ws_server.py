"""``/v1/ws`` of a real ``forge serve`` (default model, Gemma 3 270M) on 127.0.0.1: concurrent
generations, cancel (KV freed), errors identical to the HTTP API's, disconnect, and a slow
reader whose send queue stays bounded while it still gets the complete result."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest
import websockets
from forge_plugin_websocket.client import ForgeWebSocket, collect

from forge_kernel.testing.server import start_server

MESSAGES = [{"role": "user", "content": "Count from one to ten."}]
GREEDY = {"temperature": 0, "max_tokens": 8, "ignore_eos": True}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(["--threads", "2", "--max-batch-size", "16"],
                       tmp_path_factory.mktemp("ws-home"))
    yield srv
    assert srv.stop() == 0, srv.log()[-3000:]
    assert "Traceback" not in srv.log(), srv.log()[-3000:]


def _url(server) -> str:
    return f"ws://127.0.0.1:{server.port}/v1/ws"


def _engine(server) -> dict:
    return httpx.get(server.base_url + "/forge/stats", timeout=10).json()


def _ws_stats(server) -> dict:
    return httpx.get(server.base_url + "/ws/stats", timeout=10).json()


def _connection(server, local_port: int) -> dict:
    rows = [r for r in _ws_stats(server)["per_connection"]
            if r["client"].endswith(f":{local_port}")]
    assert len(rows) == 1, rows
    return rows[0]


def _wait_idle(server, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        stats = _engine(server)
        if (stats["num_requests"] == 0 and stats["num_running"] == 0
                and stats["kv_free_tokens"] == stats["kv_capacity_tokens"]):
            return stats
        assert time.monotonic() < deadline, f"engine never went idle: {stats}"
        time.sleep(0.05)


def _http_chat(server, **body) -> httpx.Response:
    return httpx.post(server.base_url + "/chat/completions", json=body, timeout=120)


async def test_eight_concurrent_generations_on_one_connection(server):
    prompts = [[{"role": "user", "content": f"Name {i + 2} colors."}] for i in range(8)]
    order: list[tuple[str, str]] = []

    async def run(ws, i):
        async def events():
            async for event in ws.chat(f"c{i}", prompts[i], **GREEDY):
                order.append((event["id"], event["type"]))
                yield event
        return await collect(events())

    async with ForgeWebSocket(_url(server)) as ws:
        results = await asyncio.gather(*(run(ws, i) for i in range(8)))
    first_done = next(n for n, (_, kind) in enumerate(order) if kind == "done")
    assert {gen_id for gen_id, _ in order[:first_done]} == {f"c{i}" for i in range(8)}
    async with httpx.AsyncClient(timeout=120) as http:  # the HTTP API, also 8 at once
        replies = await asyncio.gather(*(http.post(server.base_url + "/chat/completions",
                                                   json={"messages": prompts[i], **GREEDY})
                                         for i in range(8)))
    for result, reply in zip(results, replies, strict=True):
        body = reply.json()
        assert result.finish_reason == "length" and not result.cancelled
        assert result.usage == body["usage"]
        assert result.text == body["choices"][0]["message"]["content"]
    _wait_idle(server)


async def test_errors_match_the_http_api_and_the_connection_stays_usable(server):
    bad_bodies = [
        {"messages": MESSAGES, "temperature": 5},
        {"messages": []},
        {"messages": [{"role": "robot", "content": "x"}]},
        {"messages": MESSAGES, "model": "gpt-4"},
        {"messages": MESSAGES, "tool_choice": "required"},  # tool_choice without tools
        {"messages": MESSAGES, "top_logprobs": 2},
        {"messages": MESSAGES, "logit_bias": {"abc": 1}},
    ]
    async with websockets.connect(_url(server)) as ws:
        for i, body in enumerate(bad_bodies):
            http = _http_chat(server, **body)
            assert 400 <= http.status_code < 500
            await ws.send(json.dumps({"type": "chat.completion", "id": f"e{i}", **body}))
            reply = json.loads(await ws.recv())
            assert reply == {"type": "error", "id": f"e{i}", "error": http.json()["error"]}
        # tool calls are HTTP-only (WebSocket deltas carry text): a clear 400 naming the field
        await ws.send(json.dumps({"type": "chat.completion", "id": "t", "messages": MESSAGES,
                                  "tools": [{"type": "function", "function": {"name": "f"}}]}))
        error = json.loads(await ws.recv())["error"]
        assert (error["param"], error["code"]) == ("tools", "unsupported_parameter")
        for raw, code in [("{oops", "invalid_json"), ("[]", "invalid_message"),
                          ('{"type": "chat.completion"}', "invalid_message"),
                          ('{"type": "cancel", "id": "nope"}', "unknown_id")]:
            await ws.send(raw)
            reply = json.loads(await ws.recv())
            assert reply["type"] == "error" and reply["error"]["code"] == code, reply
        await ws.send(json.dumps({"type": "ping", "data": [1, "two"]}))
        assert json.loads(await ws.recv()) == {"type": "pong", "data": [1, "two"]}
        await ws.send(json.dumps({"type": "completion", "id": "ok", "prompt": "1, 2, 3,",
                                  "max_tokens": 4, "temperature": 0, "logprobs": 2,
                                  "echo": True}))
        events = []
        while not events or events[-1]["type"] == "delta":
            events.append(json.loads(await ws.recv()))
    assert events[-1]["type"] == "done" and events[-1]["usage"]["completion_tokens"] == 4
    deltas = events[:-1]
    assert deltas[0]["text"].startswith("1, 2, 3,")
    offsets = [o for d in deltas for o in d["logprobs"]["text_offset"]]
    assert offsets == sorted(offsets) and len(offsets) == 4
    assert all(len(top) == 2 for d in deltas for top in d["logprobs"]["top_logprobs"])


async def test_cancel_mid_stream_frees_the_kv_cache(server):
    final = None
    async with ForgeWebSocket(_url(server)) as ws:
        deltas = 0
        async for event in ws.completion("long", "Once upon a time", max_tokens=400,
                                         temperature=0, ignore_eos=True):
            if event["type"] == "delta":
                deltas += 1
                if deltas == 3:
                    busy = await asyncio.to_thread(_engine, server)
                    assert busy["num_requests"] == 1
                    assert busy["kv_free_tokens"] < busy["kv_capacity_tokens"]
                    await ws.cancel("long")
            else:
                final = event
        assert final["type"] == "cancelled" and final["finish_reason"] == "abort"
        assert 3 <= final["usage"]["completion_tokens"] < 400
        idle = await asyncio.to_thread(_wait_idle, server, 5.0)
        assert idle["kv_free_tokens"] == idle["kv_capacity_tokens"]
        assert await ws.ping() < 5  # the connection is still usable
        again = await collect(ws.completion("long", "Hi", max_tokens=2))  # the id is free
        assert again.usage["completion_tokens"] == 2


async def test_disconnect_aborts_the_connections_generations(server):
    async with websockets.connect(_url(server)) as ws:
        for i in range(2):
            await ws.send(json.dumps({"type": "completion", "id": f"d{i}", "prompt": "Hello",
                                      "max_tokens": 400, "ignore_eos": True}))
        seen = set()
        while len(seen) < 2:
            seen.add(json.loads(await ws.recv())["id"])
        assert (await asyncio.to_thread(_engine, server))["num_requests"] == 2
    await asyncio.to_thread(_wait_idle, server, 5.0)
    assert _ws_stats(server)["connections"] == 0


async def test_slow_reader_gets_everything_while_the_send_queue_stays_bounded(server):
    """Fill the socket with big pongs so the server cannot send; run 8 generations while the
    client reads nothing; the server coalesces deltas (bounded queue), the engine finishes and
    frees its KV, and once the client reads it receives complete, correct results."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", server.port))
    async with websockets.connect(_url(server), sock=sock, max_queue=1, compression=None,
                                  ping_interval=None, max_size=None) as ws:
        port = ws.local_address[1]
        payload, pings = "x" * 131072, 0
        while _connection(server, port)["queued_messages"] < 2:  # the writer is blocked
            await ws.send(json.dumps({"type": "ping", "data": payload}))
            pings += 1
            assert pings < 200, _connection(server, port)
            await asyncio.sleep(0.05)
        finished = _engine(server)["num_requests_finished"]
        for i in range(8):
            await ws.send(json.dumps({"type": "chat.completion", "id": f"s{i}",
                                      "messages": MESSAGES, **GREEDY}))
        deadline = time.monotonic() + 60
        while (_engine(server)["num_requests_finished"] < finished + 8
               or _connection(server, port)["generations"]):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        stalled = _connection(server, port)
        assert _wait_idle(server, 1.0)  # the engine holds nothing for the stalled client
        assert stalled["coalesced_deltas"] > 0
        assert stalled["queued_messages"] <= pings + 8 * 2
        assert stalled["peak_queued_messages"] <= pings + 8 * 2
        assert 0 < stalled["pending_chars"] <= 8 * 8 * 64

        texts: dict[str, str] = {}
        finals: dict[str, dict] = {}
        deltas = pongs = 0
        while len(finals) < 8:
            message = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if message["type"] == "pong":
                pongs += 1
            elif message["type"] == "delta":
                deltas += 1
                texts[message["id"]] = texts.get(message["id"], "") + message["text"]
            else:
                finals[message["id"]] = message
        assert pongs == pings and deltas < 8 * 8
    reference = _http_chat(server, messages=MESSAGES, **GREEDY).json()
    for i in range(8):
        assert finals[f"s{i}"]["type"] == "done"
        assert finals[f"s{i}"]["usage"] == reference["usage"]
        assert texts[f"s{i}"] == reference["choices"][0]["message"]["content"]
    assert _ws_stats(server)["connections"] == 0


async def test_sigterm_with_a_streaming_connection_exits_cleanly(server):
    """Keep this test last: it stops the module's server while a generation streams."""
    async with websockets.connect(_url(server)) as ws:
        await ws.send(json.dumps({"type": "completion", "id": "z", "prompt": "Hello",
                                  "max_tokens": 400, "ignore_eos": True}))
        assert json.loads(await ws.recv())["type"] == "delta"
        assert await asyncio.to_thread(server.stop) == 0
        rest = []
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                rest.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    assert ws.close_code == 1012  # "service restart"
    finals = [m for m in rest if m["type"] != "delta"]  # the abort may race the close frame
    assert all(m["type"] == "done" and m["finish_reason"] == "abort" for m in finals), finals
