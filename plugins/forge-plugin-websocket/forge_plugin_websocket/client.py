"""An async client of ``/v1/ws`` built on ``websockets``: many concurrent generations on one
connection.

::

    async with ForgeWebSocket("ws://127.0.0.1:8000/v1/ws", api_key="fk_...") as ws:
        async for event in ws.chat("c1", [{"role": "user", "content": "Hi"}], max_tokens=16):
            if event["type"] == "delta":
                print(event["text"], end="")
        result = await collect(ws.completion("c2", "Once upon a time", max_tokens=16))

Each generation's events go to their own bounded buffer; when a consumer stops reading and its
buffer fills, the client stops reading the socket (and the server then coalesces deltas), so
neither side's memory grows without bound. Leaving an iteration early cancels the generation.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import websockets

_CLOSED = object()


class ForgeWebSocketError(Exception):
    """An ``error`` message for one generation (or a closed connection, ``code="closed"``)."""

    def __init__(self, error: dict[str, Any], id: str | None = None) -> None:
        super().__init__(error.get("message", "error"))
        self.error = error
        self.id = id
        self.message = error.get("message")
        self.type = error.get("type")
        self.param = error.get("param")
        self.code = error.get("code")


class _Inbox:
    """A bounded FIFO whose close marker is always accepted."""

    def __init__(self, bound: int) -> None:
        self._items: deque[Any] = deque()
        self._bound = bound
        self._changed = asyncio.Event()

    async def put(self, item: Any) -> None:
        while self._bound and len(self._items) >= self._bound:
            self._changed.clear()
            await self._changed.wait()
        self._items.append(item)
        self._changed.set()

    def close(self) -> None:
        self._items.append(_CLOSED)
        self._changed.set()

    async def get(self) -> Any:
        while not self._items:
            self._changed.clear()
            await self._changed.wait()
        item = self._items.popleft()
        self._changed.set()
        return item


class ForgeWebSocket:
    """One connection to a forge ``/v1/ws`` endpoint.

    ``api_key`` is sent as ``Authorization: Bearer`` on the handshake; ``buffer`` bounds each
    generation's unread events (0: unbounded); other keyword arguments go to
    ``websockets.connect`` (``open_timeout``, ``ping_interval``, ``max_queue``...).
    """

    def __init__(self, url: str, api_key: str | None = None, *, buffer: int = 1024,
                 headers: dict[str, str] | None = None, **connect_kwargs: Any) -> None:
        self.url = "ws" + url[4:] if url.startswith("http") else url
        self._headers = dict(headers or {})
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._connect_kwargs = connect_kwargs
        self._buffer = buffer
        self._conn: Any = None
        self._reader: asyncio.Task | None = None
        self._streams: dict[str, _Inbox] = {}
        self._unrouted = _Inbox(0)
        self._pings: dict[int, asyncio.Future] = {}
        self._ping_ids = itertools.count(1)

    # -- connection ------------------------------------------------------------------------------
    async def connect(self) -> ForgeWebSocket:
        self._conn = await websockets.connect(self.url, additional_headers=self._headers,
                                              **self._connect_kwargs)
        self._reader = asyncio.create_task(self._read(), name="forge-ws-client-reader")
        return self

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    async def __aenter__(self) -> ForgeWebSocket:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, message: dict[str, Any] | str) -> None:
        """Send one raw protocol message (a dict is JSON-encoded)."""
        await self._conn.send(message if isinstance(message, str) else json.dumps(message))

    # -- generations -----------------------------------------------------------------------------
    def chat(self, id: str, messages: list[dict[str, Any]],
             **params: Any) -> AsyncIterator[dict[str, Any]]:
        """Start chat completion ``id`` (same parameters as ``/v1/chat/completions``) and yield
        its ``delta`` events, then its ``done`` (or ``cancelled``) event. An ``error`` raises
        :class:`ForgeWebSocketError`; the connection stays usable."""
        return self._generate({"type": "chat.completion", "id": id, "messages": messages,
                               **params})

    def completion(self, id: str, prompt: Any, **params: Any) -> AsyncIterator[dict[str, Any]]:
        """Like :meth:`chat` for a text completion (parameters of ``/v1/completions``)."""
        return self._generate({"type": "completion", "id": id, "prompt": prompt, **params})

    async def cancel(self, id: str) -> None:
        """Ask the server to stop generation ``id``; its iteration ends with ``cancelled``."""
        await self.send({"type": "cancel", "id": id})

    async def ping(self, timeout: float = 10.0) -> float:
        """Round trip of an application-level ``ping``/``pong``, in seconds."""
        number = next(self._ping_ids)
        future = asyncio.get_running_loop().create_future()
        self._pings[number] = future
        started = time.monotonic()
        try:
            await self.send({"type": "ping", "data": number})
            await asyncio.wait_for(future, timeout)
        finally:
            self._pings.pop(number, None)
        return time.monotonic() - started

    async def next_unrouted(self, timeout: float | None = None) -> dict[str, Any]:
        """The next message that belongs to no running generation (errors with ``id: null``,
        answers to a cancel sent after the generation ended...)."""
        item = await asyncio.wait_for(self._unrouted.get(), timeout)
        if item is _CLOSED:
            self._unrouted.close()
            raise ForgeWebSocketError({"message": "connection closed", "code": "closed"})
        return item

    async def _generate(self, message: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        gen_id = message["id"]
        if gen_id in self._streams:
            raise ValueError(f"generation {gen_id!r} is already running on this connection")
        inbox = self._streams[gen_id] = _Inbox(self._buffer)
        finished = False
        try:
            await self.send(message)
            while True:
                event = await inbox.get()
                if event is _CLOSED:
                    finished = True
                    raise ForgeWebSocketError({"message": "connection closed before the "
                                               "generation finished", "code": "closed"}, gen_id)
                if event["type"] == "error":
                    finished = True
                    raise ForgeWebSocketError(event["error"], gen_id)
                finished = event["type"] in ("done", "cancelled")
                yield event
                if finished:
                    return
        finally:
            self._streams.pop(gen_id, None)
            if not finished and self._conn is not None:
                try:
                    await self.cancel(gen_id)
                except Exception:  # noqa: BLE001 - best effort: the connection may be gone
                    pass

    async def _read(self) -> None:
        try:
            async for raw in self._conn:
                message = json.loads(raw)
                if message.get("type") == "pong" and message.get("data") in self._pings:
                    future = self._pings[message["data"]]
                    if not future.done():
                        future.set_result(None)
                    continue
                inbox = self._streams.get(message.get("id"))
                await (inbox or self._unrouted).put(message)
        finally:
            for inbox in (*self._streams.values(), self._unrouted):
                inbox.close()


@dataclass(slots=True)
class Result:
    """A whole generation, as gathered by :func:`collect`."""

    id: str
    texts: list[str] = field(default_factory=list)
    finish_reasons: list[str | None] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    cancelled: bool = False
    deltas: int = 0

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""

    @property
    def finish_reason(self) -> str | None:
        return self.finish_reasons[0] if self.finish_reasons else None


async def collect(events: AsyncIterator[dict[str, Any]]) -> Result:
    """Consume a generation's events into a :class:`Result` (raises on ``error``)."""
    result: Result | None = None
    async for event in events:
        if result is None:
            result = Result(event["id"])
        if event["type"] == "delta":
            index = event["index"]
            while len(result.texts) <= index:
                result.texts.append("")
            result.texts[index] += event["text"]
            result.deltas += 1
        else:
            result.cancelled = event["type"] == "cancelled"
            result.finish_reasons = [c["finish_reason"] for c in event["choices"]]
            result.usage = event["usage"]
    if result is None:
        raise ForgeWebSocketError({"message": "the generation produced no events",
                                   "code": "closed"})
    return result
