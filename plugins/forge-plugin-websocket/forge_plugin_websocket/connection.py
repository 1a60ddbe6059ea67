"""One WebSocket connection: a reader task (client messages), a writer task (the outbox) and a
task per running generation. Closing the connection aborts every generation it started."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from forge_plugin_protocol.errors import APIError
from forge_plugin_protocol.prepare import prepare

from forge_kernel.engine.types import InvalidRequest
from forge_plugin_websocket import messages
from forge_plugin_websocket.config import WebSocketConfig
from forge_plugin_websocket.generation import Generation
from forge_plugin_websocket.messages import Cancel, Generate, Ping, ProtocolError
from forge_plugin_websocket.outbox import Outbox
from forge_plugin_websocket.stats import EndpointStats

log = logging.getLogger("forge.websocket")


class Connection:
    """Serves one accepted-to-be WebSocket (Starlette ``WebSocket``) until it closes."""

    def __init__(self, websocket: Any, server: Any, config: WebSocketConfig,
                 endpoint_stats: EndpointStats) -> None:
        self.ws = websocket
        self.server = server
        self.config = config
        self._endpoint_stats = endpoint_stats
        self.stats = endpoint_stats.open(_client(websocket))
        self.outbox = Outbox(self.stats, config.send_queue_size, config.send_queue_bytes)
        self.generations: dict[str, tuple[Generation, asyncio.Task]] = {}

    async def serve(self) -> None:
        """Accept, then run until the client disconnects (or sending fails)."""
        try:
            await self.ws.accept()
            reader = asyncio.create_task(self._read(), name="forge-ws-reader")
            writer = asyncio.create_task(self._write(), name="forge-ws-writer")
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            tasks = [reader, writer, *(task for _, task in self.generations.values())]
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception) and not _is_disconnect(result):
                    log.error("websocket connection failed", exc_info=result)
            if reader not in done:  # the writer stopped on its own: make sure the socket closes
                await _close_quietly(self.ws, 1011)
        finally:
            self._endpoint_stats.close(self.stats)

    # -- reading ---------------------------------------------------------------------------------
    async def _read(self) -> None:
        while True:
            await self.outbox.wait_for_space()
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            try:
                await self._handle(message.get("bytes") if raw is None else raw)
            except ProtocolError as exc:
                self.outbox.put(exc.to_message())

    async def _handle(self, raw: str | bytes) -> None:
        msg = messages.parse(raw, self.config.max_id_length)
        if isinstance(msg, Ping):
            self.outbox.put(messages.pong(msg.data))
        elif isinstance(msg, Cancel):
            running = self.generations.get(msg.id)
            if running is None:
                raise ProtocolError(f"no running generation has id {msg.id!r} (it may have "
                                    "just finished)", param="id", code="unknown_id", id=msg.id)
            await running[0].cancel()
        elif isinstance(msg, Generate):
            self._start(msg)

    def _start(self, msg: Generate) -> None:
        if msg.id in self.generations:
            raise ProtocolError(f"a generation with id {msg.id!r} is already running on this "
                                "connection", param="id", code="duplicate_id", id=msg.id)
        if len(self.generations) >= self.config.max_generations:
            raise ProtocolError(f"this connection already runs {len(self.generations)} "
                                "generations (the limit); wait for one to finish", status=429,
                                code="too_many_generations", id=msg.id)
        try:
            # tool_calls=False: the WebSocket delta messages carry text only, so tools are
            # refused with a 400 naming the field (tool turns in the history still render)
            prepared = prepare(self.server, msg.body,
                               "wschat" if msg.kind == "chat.completion" else "wscmpl",
                               tool_calls=False)
        except (InvalidRequest, APIError) as exc:
            raise ProtocolError(exc.message, param=exc.param, code=exc.code,
                                status=getattr(exc, "status", 400), id=msg.id) from None
        except Exception as exc:  # noqa: BLE001 - e.g. a chat template error: report it
            log.exception("websocket: could not prepare request %s", msg.id)
            raise ProtocolError(f"The server had an error while processing your request. "
                                f"({type(exc).__name__})", code="internal_error", status=500,
                                id=msg.id) from None
        generation = Generation(msg.id, prepared, self.server.engine, self.outbox)
        task = asyncio.create_task(self._run(generation), name=f"forge-ws-{prepared.request_id}")
        self.generations[msg.id] = (generation, task)
        self.stats.generations = len(self.generations)

    async def _run(self, generation: Generation) -> None:
        try:
            await generation.run()
        finally:
            self.generations.pop(generation.id, None)
            self.stats.generations = len(self.generations)

    # -- writing ---------------------------------------------------------------------------------
    async def _write(self) -> None:
        while True:
            for text in await self.outbox.next():
                await self.ws.send_text(text)
                self.stats.messages_sent += 1


def _client(websocket: Any) -> str:
    client = getattr(websocket, "client", None)
    return f"{client.host}:{client.port}" if client else ""


def _is_disconnect(exc: BaseException) -> bool:
    from starlette.websockets import WebSocketDisconnect

    return isinstance(exc, WebSocketDisconnect | OSError)


async def _close_quietly(websocket: Any, code: int) -> None:
    try:
        await websocket.close(code)
    except Exception:  # noqa: BLE001 - already closed
        pass
