""":class:`AsyncEngine`: the engine every endpoint uses; one background thread runs the
:class:`LLMEngine` loop (docs/architecture.md)."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from functools import partial
from typing import Any

from forge_kernel.engine.engine import Event, LLMEngine
from forge_kernel.engine.types import CompletionDelta, SamplingParams
from forge_kernel.errors import EngineDead, InvalidRequest

_STOP = object()
SHARED = frozenset({"tokenizer", "model_config", "max_model_len", "model_name", "metadata",
                    "adapters", "generation_defaults", "add_observer", "stats", "validate"})
"""What :class:`AsyncEngine` forwards to its :class:`LLMEngine`: read-only facts and thread-safe
calls (``validate`` raises ``InvalidRequest`` before headers are sent; observers run on the
engine thread)."""


class AsyncEngine:
    """Asynchronous front of one :class:`LLMEngine` (submit / stream / abort)."""

    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        """Callables the engine thread runs between steps, each returning the events it made."""
        self._streams: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._closing = False

    def __getattr__(self, name: str) -> Any:
        """The :data:`SHARED` members of the engine."""
        if name in SHARED:
            return getattr(self.engine, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._error is None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the engine thread (idempotent)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="forge-engine", daemon=True)
        self._thread.start()

    async def shutdown(self, drain_timeout: float = 0.0) -> None:
        """Stop accepting requests, let running ones finish for up to ``drain_timeout`` s, abort
        the rest and stop the thread."""
        self._closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        while self._streams and loop.time() < deadline:
            await asyncio.sleep(0.05)
        self.abort_all()
        self._commands.put(_STOP)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10.0)

    # -- requests -------------------------------------------------------------------------------
    async def generate(self, request_id: str, prompt_ids: list[int], params: SamplingParams,
                       prompt_param: str = "prompt") -> AsyncIterator[CompletionDelta]:
        """Stream one request's deltas (the last carries ``usage``); ``InvalidRequest`` before
        the first, ``RequestFailed`` if it cannot be served; leaving early aborts it."""
        self._check_open()
        self.engine.validate(prompt_ids, params, prompt_param)
        if request_id in self._streams:
            raise InvalidRequest(f"request id {request_id!r} is already in use",
                                 param="request_id")
        events: asyncio.Queue = asyncio.Queue()
        self._streams[request_id] = (asyncio.get_running_loop(), events)
        finished = False
        try:
            self._commands.put(partial(self._add, request_id, list(prompt_ids), params,
                                       prompt_param))
            while True:
                item = await events.get()
                finished = isinstance(item, BaseException) or item.usage is not None
                if isinstance(item, BaseException):
                    raise item
                yield item
                if finished:
                    return
        finally:
            self._streams.pop(request_id, None)
            if not finished:
                self._commands.put(partial(self.engine.abort, request_id))

    async def abort(self, request_id: str) -> None:
        """Abort a request; its stream ends with ``finish_reason="abort"`` events."""
        self._commands.put(partial(self.engine.abort, request_id))

    def abort_all(self) -> int:
        """Abort every live request and return how many (no await: signal handlers call it)."""
        live = list(self._streams)
        for request_id in live:
            self._commands.put(partial(self.engine.abort, request_id))
        return len(live)

    async def embed(self, prompt_ids_list: list[list[int]]) -> list[list[float]]:
        """Embedding vectors (see :meth:`LLMEngine.embed`), computed on the engine thread."""
        self._check_open()
        future: Future = Future()
        self._commands.put(partial(_resolve, future, self.engine.embed, prompt_ids_list))
        return await asyncio.wrap_future(future)

    def _check_open(self) -> None:
        if self._error is not None:
            raise EngineDead(f"the engine loop crashed: {self._error!r}")
        if self._closing or self._thread is None:
            raise EngineDead("the engine is not running (shut down or not started)")

    # -- the engine thread ----------------------------------------------------------------------
    def _loop(self) -> None:
        engine = self.engine
        try:
            while True:
                # Block only when idle; otherwise take what arrived and step.
                block = not engine.has_unfinished()
                events: list[Event] = []
                while True:
                    try:
                        cmd = self._commands.get(block=block)
                    except queue.Empty:
                        break
                    block = False
                    if cmd is _STOP:
                        return
                    events.extend(cmd())
                if engine.has_unfinished():
                    steps = engine.stats().num_steps
                    events.extend(engine.step())
                    if engine.stats().num_steps == steps and not events:
                        time.sleep(0.001)  # nothing could run (waiting on KV): do not spin
                if events:
                    self._deliver(events)
        except BaseException as exc:  # noqa: BLE001 - report to every waiting stream
            self._error = exc
            failure = EngineDead(f"the engine loop crashed: {exc!r}")
            for rid in list(self._streams):
                self._deliver([(rid, failure)])

    def _add(self, rid: str, prompt_ids: list[int], params: SamplingParams,
             prompt_param: str) -> list[Event]:
        if rid in self._streams:  # else the consumer left before the engine saw it
            try:
                self.engine.add_request(rid, prompt_ids, params, prompt_param)
            except Exception as exc:  # noqa: BLE001 - goes to the consumer
                return [(rid, exc)]
        return []

    def _deliver(self, events: list[Event]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue, Any]]] = {}
        for rid, item in events:
            target = self._streams.get(rid)
            if target is not None:
                by_loop.setdefault(target[0], []).append((target[1], item))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_put_all, items)
            except RuntimeError:  # that event loop is closed; its consumers are gone
                pass


def _resolve(future: Future, fn: Callable[..., Any], *args: Any) -> list[Event]:
    try:
        future.set_result(fn(*args))
    except Exception as exc:  # noqa: BLE001 - goes to the awaiting caller
        future.set_exception(exc)
    return []


def _put_all(items: list[tuple[asyncio.Queue, Any]]) -> None:
    for q, item in items:
        q.put_nowait(item)
