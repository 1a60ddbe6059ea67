"""The connection logic (reader, writer, outbox, generations) against a fake engine and a fake
socket: backpressure and bounds deterministically, in milliseconds."""

from __future__ import annotations

import asyncio

import pytest
from forge_plugin_websocket.config import WebSocketConfig
from forge_plugin_websocket.connection import Connection
from forge_plugin_websocket.stats import EndpointStats
from ws_fakes import FakeEngine, FakeWebSocket, fake_server, token_text


def _start(engine: FakeEngine, **config) -> tuple[FakeWebSocket, Connection, asyncio.Task]:
    ws = FakeWebSocket()
    conn = Connection(ws, fake_server(engine), WebSocketConfig(**config), EndpointStats())
    return ws, conn, asyncio.create_task(conn.serve())


def _completion(gen_id: str, max_tokens: int, **extra) -> dict:
    return {"type": "completion", "id": gen_id, "prompt": "abc", "max_tokens": max_tokens,
            **extra}


def _texts(sent: list[dict]) -> dict[tuple[str, int], str]:
    out: dict[tuple[str, int], str] = {}
    for m in sent:
        if m["type"] == "delta":
            out[(m["id"], m["index"])] = out.get((m["id"], m["index"]), "") + m["text"]
    return out


def _finals(sent: list[dict]) -> dict[str, dict]:
    return {m["id"]: m for m in sent if m["type"] in ("done", "cancelled", "error") and m["id"]}


async def _stop(ws: FakeWebSocket, task: asyncio.Task) -> None:
    ws.gate.set()
    ws.disconnect()
    await asyncio.wait_for(task, 5)


async def test_streams_deltas_and_done_with_usage():
    engine = FakeEngine()
    ws, conn, task = _start(engine)
    ws.feed(_completion("a", 5, n=2))
    sent = await ws.wait_for(lambda s: "a" in _finals(s))
    assert _texts(sent) == {("a", i): "".join(token_text(t) for t in range(5)) for i in (0, 1)}
    done = _finals(sent)["a"]
    assert done["type"] == "done" and done["finish_reason"] == "length"
    assert [c["finish_reason"] for c in done["choices"]] == ["length", "length"]
    assert done["usage"]["prompt_tokens"] == 3 and done["usage"]["completion_tokens"] == 10
    assert done["request_id"].startswith("wscmpl-")
    await _stop(ws, task)


async def test_slow_reader_coalesces_and_stays_bounded():
    """A client that reads nothing while 4 generations produce 300 tokens each: the queue
    holds at most a delta and a final message per generation; then everything arrives."""
    engine = FakeEngine()
    ws, conn, task = _start(engine)
    ws.gate.clear()  # the client stops reading
    ws.feed({"type": "ping"})  # the writer takes it and blocks sending it
    for g in range(4):
        ws.feed(_completion(f"g{g}", 300))
    while engine.deltas < 1200 or engine.live or conn.generations:
        await asyncio.sleep(0.001)
    stats = conn.stats
    assert stats.queued_messages <= 4 * 2
    assert stats.peak_queued_messages <= 4 * 2 + 1
    assert stats.coalesced_deltas >= 1200 - 4 * 2
    full = "".join(token_text(t) for t in range(300))
    assert stats.pending_chars == 4 * len(full)
    ws.gate.set()  # the client reads again
    sent = await ws.wait_for(lambda s: len(_finals(s)) == 4)
    assert _texts(sent) == {(f"g{g}", 0): full for g in range(4)}
    assert all(f["type"] == "done" for f in _finals(sent).values())
    assert len(sent) <= 1 + 4 * 2  # pong + one coalesced delta and done per generation
    assert stats.queued_messages == 0 and stats.pending_chars == 0
    await _stop(ws, task)


async def test_control_queue_bound_pauses_reading():
    engine = FakeEngine()
    ws, conn, task = _start(engine, send_queue_size=4)
    ws.gate.clear()
    for i in range(20):
        ws.feed({"type": "ping", "data": i})
    await asyncio.sleep(0.05)
    # 1 pong is blocked in the writer, 4 are queued: the other pings are still unread
    assert conn.stats.queued_messages == 4 and ws.incoming.qsize() == 20 - 5
    ws.gate.set()
    sent = await ws.wait_for(lambda s: len(s) == 20)
    assert [m["data"] for m in sent] == list(range(20))
    assert conn.stats.peak_queued_messages == 4
    await _stop(ws, task)


async def test_control_queue_byte_bound():
    engine = FakeEngine()
    ws, conn, task = _start(engine, send_queue_bytes=10_000)
    ws.gate.clear()
    for _ in range(10):
        ws.feed({"type": "ping", "data": "x" * 4000})
    await asyncio.sleep(0.05)
    assert conn.stats.queued_messages == 3  # 3 x 4 kB crossed 10 kB: reading paused
    assert conn.stats.control_bytes < 10_000 + 4100
    await _stop(ws, task)


async def test_cancel_aborts_and_answers_cancelled():
    engine = FakeEngine(token_delay=0.001)
    ws, conn, task = _start(engine)
    ws.feed(_completion("long", 100_000))
    await ws.wait_for(lambda s: len(s) >= 3)
    ws.feed({"type": "cancel", "id": "long"})
    sent = await ws.wait_for(lambda s: "long" in _finals(s))
    final = _finals(sent)["long"]
    assert final["type"] == "cancelled" and final["finish_reason"] == "abort"
    assert 0 < final["usage"]["completion_tokens"] < 100_000
    assert not engine.live and not conn.generations
    ws.feed({"type": "cancel", "id": "long"})  # no longer running
    sent = await ws.wait_for(lambda s: s[-1]["type"] == "error")
    assert sent[-1]["id"] == "long" and sent[-1]["error"]["code"] == "unknown_id"
    await _stop(ws, task)


async def test_disconnect_aborts_every_generation():
    engine = FakeEngine(token_delay=0.001)
    ws, conn, task = _start(engine)
    for g in range(3):
        ws.feed(_completion(f"g{g}", 100_000))
    await ws.wait_for(lambda s: len({m["id"] for m in s}) == 3)
    assert len(engine.live) == 3
    ws.disconnect()
    await asyncio.wait_for(task, 5)
    assert not engine.live and not conn.generations


@pytest.mark.parametrize(("message", "code", "kind"), [
    (_completion("m", 4, model="gpt-4"), "model_not_found", "invalid_request_error"),
    ({"type": "completion", "id": "m", "prompt": "x" * 2000}, "context_length_exceeded",
     "invalid_request_error"),
    (_completion("m", 4, suffix="s"), "unsupported_parameter", "invalid_request_error"),
    ({"type": "chat.completion", "id": "m", "messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "function"}]}, "unsupported_parameter", "invalid_request_error"),
    ({"type": "chat.completion", "id": "m", "messages": [{"role": "user", "content": "x"}],
      "forge_tools": ["rag_search"]}, "unsupported_parameter", "invalid_request_error"),
])
async def test_request_errors_keep_the_connection(message, code, kind):
    engine = FakeEngine()
    ws, conn, task = _start(engine)
    ws.feed(message)
    ws.feed(_completion("ok", 2))
    sent = await ws.wait_for(lambda s: "ok" in _finals(s))
    assert sent[0]["type"] == "error" and sent[0]["id"] == "m"
    assert sent[0]["error"]["code"] == code and sent[0]["error"]["type"] == kind
    assert _finals(sent)["ok"]["type"] == "done"
    await _stop(ws, task)


async def test_duplicate_id_and_generation_limit():
    engine = FakeEngine(token_delay=0.001)
    ws, conn, task = _start(engine, max_generations=2)
    ws.feed(_completion("a", 100_000))
    ws.feed(_completion("a", 4))
    ws.feed(_completion("b", 100_000))
    ws.feed(_completion("c", 4))
    sent = await ws.wait_for(lambda s: sum(m["type"] == "error" for m in s) == 2)
    errors = [m for m in sent if m["type"] == "error"]
    assert [(e["id"], e["error"]["code"]) for e in errors] == [
        ("a", "duplicate_id"), ("c", "too_many_generations")]
    assert errors[1]["error"]["type"] == "rate_limit_error"
    await _stop(ws, task)
    assert not engine.live


async def test_completion_echo_logprobs_offsets_and_prompt_lists():
    engine = FakeEngine()
    ws, conn, task = _start(engine)
    ws.feed(_completion("e", 3, prompt=["ab", "cd"], echo=True, n=2))
    sent = await ws.wait_for(lambda s: "e" in _finals(s))
    texts = _texts(sent)
    tail = "".join(token_text(t) for t in range(3))
    assert texts == {("e", 0): "ab" + tail, ("e", 1): "ab" + tail,
                     ("e", 2): "cd" + tail, ("e", 3): "cd" + tail}
    done = _finals(sent)["e"]
    assert len(done["choices"]) == 4 and done["usage"]["prompt_tokens"] == 4
    assert done["usage"]["completion_tokens"] == 12
    await _stop(ws, task)
