"""One generation of a connection: runs its engine requests (one per prompt, concurrently) and
feeds their deltas to its :class:`~forge_plugin_websocket.outbox.GenerationOutput`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from forge_plugin_protocol.errors import APIError
from forge_plugin_protocol.prepare import Prepared
from forge_plugin_protocol.streaming import (
    chat_logprobs,
    completion_logprobs,
    stream,
    usage_json,
)

from forge_kernel.engine.types import InvalidRequest, Usage
from forge_kernel.errors import EngineDead
from forge_kernel.log import bind_request_id
from forge_plugin_websocket import messages
from forge_plugin_websocket.outbox import Outbox

log = logging.getLogger("forge.websocket")


class Generation:
    """Generation ``id`` of one connection. :meth:`run` is its task; it always ends by queuing
    exactly one final message (``done``, ``cancelled`` or ``error``), unless the connection
    closes first (then the task is cancelled and its engine requests aborted)."""

    def __init__(self, msg_id: str, prepared: Prepared, engine: Any, outbox: Outbox) -> None:
        self.id = msg_id
        self.prepared = prepared
        self.engine = engine
        self.output = outbox.output(self._render)
        self.cancelled = False
        self._started: list[str] = []
        self._finish: list[str | None] = [None] * prepared.num_choices
        self._usage = Usage()
        self._offsets = [0] * prepared.num_choices

    def engine_request_id(self, prompt: int) -> str:
        return f"{self.prepared.request_id}-{prompt}"

    async def cancel(self) -> None:
        """Abort the engine requests; their streams end with ``finish_reason="abort"`` (the
        engine frees their KV at once) and :meth:`run` then queues ``cancelled``."""
        self.cancelled = True
        for request_id in self._started:
            await self.engine.abort(request_id)

    async def run(self) -> None:
        bind_request_id(self.prepared.request_id)
        p = self.prepared
        for prompt, echo in enumerate(p.echoes):
            for i in range(p.params.n):
                self.output.add(prompt * p.params.n + i, echo)
        try:
            await _all(self._consume(prompt, ids) for prompt, ids in enumerate(p.prompts))
        except (InvalidRequest, APIError) as exc:
            final = messages.error(self.id, getattr(exc, "message", str(exc)),
                                   getattr(exc, "status", 400), exc.param, exc.code)
        except Exception as exc:  # noqa: BLE001 - reported to the client; the connection lives
            log.warning("websocket generation %s failed: %r", p.request_id, exc)
            final = messages.error(self.id, f"generation failed: {exc}", _status(exc), None,
                                   "internal_error")
        else:
            final = messages.final("cancelled" if self.cancelled else "done", self.id,
                                   self._finish, usage_json(self._usage), p.request_id)
        self.output.finish(final)

    async def _consume(self, prompt: int, prompt_ids: list[int]) -> None:
        if self.cancelled:
            return
        request_id = self.engine_request_id(prompt)
        # Nothing awaits between this line and the engine queuing the request, so a cancel
        # that sees the id in _started is always ordered after the request's "add".
        self._started.append(request_id)
        base = prompt * self.prepared.params.n
        async for delta in stream(self.engine, request_id, prompt_ids, self.prepared.params,
                                  self.prepared.prompt_param):
            index = base + delta.index
            self.output.add(index, delta.text, delta.logprobs)
            if delta.finish_reason is not None:
                self._finish[index] = delta.finish_reason
            if delta.usage is not None:
                self._usage.prompt_tokens += delta.usage.prompt_tokens
                self._usage.completion_tokens += delta.usage.completion_tokens
                self._usage.cached_tokens += delta.usage.cached_tokens

    def _render(self, index: int, text: str, logprobs: list[Any]) -> dict[str, Any]:
        out = None
        if self.prepared.params.logprobs is not None:
            tokenizer = self.engine.tokenizer
            if self.prepared.chat:
                out = chat_logprobs(tokenizer, logprobs)
            else:
                out = completion_logprobs(tokenizer, logprobs, self._offsets[index])
        self._offsets[index] += len(text)
        return messages.delta(self.id, index, text, out)


def _status(exc: Exception) -> int:
    return 503 if isinstance(exc, EngineDead) else 500


async def _all(coroutines) -> None:
    """Run concurrently; the first failure cancels the rest and is raised."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
