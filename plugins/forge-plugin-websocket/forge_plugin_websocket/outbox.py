"""The per-connection send queue: bounded, with delta coalescing.

Generations never wait for the client: they keep consuming the engine (so the engine's own
per-request queue stays empty and KV is released as soon as a request ends) and hand their
deltas to a :class:`GenerationOutput`. While the client is not reading, the writer is blocked
(uvicorn's ``send`` waits for the socket to drain) and new deltas of a choice are *merged* into
that choice's unsent delta instead of queued as new messages. So the queue holds at most

* ``send_queue_size`` control messages (pong, errors not tied to a running generation) of at
  most ``send_queue_bytes`` in all (plus the one message that crossed the limit) — when full,
  the server stops reading the connection until there is room again (TCP then pushes back on
  the client), and
* per generation: one delta per choice plus its final message,

and the unsent text is at most what the generation produces (bounded by ``max_tokens`` or the
context length). Message count never grows with the number of tokens.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from forge_plugin_websocket.stats import ConnectionStats


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


Render = Callable[[int, str, list[Any]], dict[str, Any]]
"""``render(index, text, logprobs)``: the delta message for one choice's unsent output."""


@dataclass(slots=True)
class _Unsent:
    parts: list[str] = field(default_factory=list)
    logprobs: list[Any] = field(default_factory=list)


class GenerationOutput:
    """What one generation produced and the client has not been sent yet."""

    def __init__(self, outbox: Outbox, render: Render) -> None:
        self._outbox = outbox
        self._render = render
        self._choices: dict[int, _Unsent] = {}
        self._final: dict[str, Any] | None = None
        self.scheduled = False

    def add(self, index: int, text: str, logprobs: list[Any] | None = None) -> None:
        """Queue output of choice ``index``; merges with that choice's unsent output."""
        if not text and not logprobs:
            return
        stats = self._outbox.stats
        unsent = self._choices.get(index)
        if unsent is None:
            unsent = self._choices[index] = _Unsent()
            stats.queued(1)
        else:
            stats.coalesced_deltas += 1
        unsent.parts.append(text)
        unsent.logprobs.extend(logprobs or ())
        stats.pending(len(text))
        self._outbox.schedule(self)

    def finish(self, message: dict[str, Any]) -> None:
        """Queue the generation's last message (sent after all of its deltas)."""
        self._final = message
        self._outbox.stats.queued(1)
        self._outbox.schedule(self)

    def take(self) -> list[str]:
        """Every unsent message of this generation, encoded, in order (deltas by choice, then
        its final message)."""
        messages = []
        for index in sorted(self._choices):
            unsent = self._choices[index]
            text = "".join(unsent.parts)
            self._outbox.stats.pending(-len(text))
            messages.append(encode(self._render(index, text, unsent.logprobs)))
        self._choices.clear()
        if self._final is not None:
            messages.append(encode(self._final))
            self._final = None
        self._outbox.stats.queued(-len(messages))
        return messages


class Outbox:
    """A connection's messages waiting for the writer: control messages first, then
    generations' output round-robin (a generation that produced more while being sent goes to
    the back)."""

    def __init__(self, stats: ConnectionStats, control_limit: int, control_bytes: int) -> None:
        self.stats = stats
        self._limit = max(1, control_limit)
        self._byte_limit = max(1, control_bytes)
        self._control: deque[str] = deque()
        self._ready: deque[GenerationOutput] = deque()
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    def output(self, render: Render) -> GenerationOutput:
        return GenerationOutput(self, render)

    async def wait_for_space(self) -> None:
        """Return once a control message can be queued (the reader calls it before reading
        the next client message, so a client that floods pings without reading is paused)."""
        while self._full():
            self._space.clear()
            await self._space.wait()

    def _full(self) -> bool:
        return (len(self._control) >= self._limit
                or self.stats.control_bytes >= self._byte_limit)

    def put(self, message: dict[str, Any]) -> None:
        """Queue a control message (after :meth:`wait_for_space`)."""
        text = encode(message)
        self._control.append(text)
        self.stats.queued(1)
        self.stats.control(len(text))
        self._wake.set()

    def schedule(self, output: GenerationOutput) -> None:
        if not output.scheduled:
            output.scheduled = True
            self._ready.append(output)
            self._wake.set()

    async def next(self) -> list[str]:
        """Wait for and return the next (encoded) messages to send."""
        while True:
            if self._control:
                text = self._control.popleft()
                self.stats.queued(-1)
                self.stats.control(-len(text))
                if not self._full():
                    self._space.set()
                return [text]
            while self._ready:
                output = self._ready.popleft()
                output.scheduled = False
                messages = output.take()
                if messages:
                    return messages
            self._wake.clear()
            await self._wake.wait()
