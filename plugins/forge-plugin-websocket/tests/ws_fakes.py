"""A fake engine and a fake Starlette WebSocket for fast tests of the connection logic."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

from forge_kernel.engine.types import CompletionDelta, InvalidRequest, Usage


class FakeTokenizer:
    def apply_chat_template(self, messages, add_generation_prompt=True) -> str:
        return "|".join(str(m.get("content")) for m in messages)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids)


def token_text(i: int) -> str:
    return f"t{i} "


class FakeEngine:
    """Produces ``token_text(i)`` for i < max_tokens, for every choice, as fast as asked."""

    def __init__(self, token_delay: float = 0.0) -> None:
        self.tokenizer = FakeTokenizer()
        self.adapters: tuple[str, ...] = ()
        self.token_delay = token_delay
        self.live: set[str] = set()
        self.aborted: set[str] = set()
        self.deltas = 0

    def generation_defaults(self) -> dict[str, Any]:
        return {}

    def validate(self, ids, params, prompt_param="prompt") -> None:
        if len(ids) > 1000:
            raise InvalidRequest("prompt too long", param=prompt_param,
                                 code="context_length_exceeded")

    async def abort(self, request_id: str) -> None:
        self.aborted.add(request_id)

    async def generate(self, request_id, prompt_ids, params, prompt_param="prompt"):
        self.validate(prompt_ids, params, prompt_param)
        self.live.add(request_id)
        try:
            for i in range(params.max_tokens):
                await asyncio.sleep(self.token_delay)
                if request_id in self.aborted:
                    for n in range(params.n):
                        yield CompletionDelta(n, "", finish_reason="abort",
                                              usage=Usage(len(prompt_ids), i * params.n)
                                              if n == params.n - 1 else None)
                    return
                last = i == params.max_tokens - 1
                for n in range(params.n):
                    self.deltas += 1
                    yield CompletionDelta(
                        n, token_text(i), token_ids=[i], finish_reason="length" if last else None,
                        usage=Usage(len(prompt_ids), (i + 1) * params.n)
                        if last and n == params.n - 1 else None)
        finally:
            self.live.discard(request_id)


class FakeWebSocket:
    """Starlette-``WebSocket``-like; ``gate`` cleared = a client that does not read."""

    def __init__(self) -> None:
        self.client = SimpleNamespace(host="127.0.0.1", port=4242)
        self.incoming: asyncio.Queue = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.new_message = asyncio.Event()

    async def accept(self) -> None:
        pass

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send_text(self, text: str) -> None:
        await self.gate.wait()
        self.sent.append(json.loads(text))
        self.new_message.set()

    async def close(self, code: int = 1000) -> None:
        pass

    def feed(self, message: dict[str, Any] | str | bytes) -> None:
        if isinstance(message, bytes):
            self.incoming.put_nowait({"type": "websocket.receive", "bytes": message})
            return
        text = message if isinstance(message, str) else json.dumps(message)
        self.incoming.put_nowait({"type": "websocket.receive", "text": text})

    def disconnect(self) -> None:
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})

    async def wait_for(self, predicate, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until ``predicate(self.sent)`` holds; return the messages sent so far."""
        async def poll():
            while not predicate(self.sent):
                self.new_message.clear()
                await self.new_message.wait()
        await asyncio.wait_for(poll(), timeout)
        return self.sent


def fake_server(engine: FakeEngine) -> SimpleNamespace:
    return SimpleNamespace(engine=engine, serves=lambda model: model in (None, "fake"))
