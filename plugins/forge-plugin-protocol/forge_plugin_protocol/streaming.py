"""Running engine requests for the HTTP and WebSocket APIs: streaming (usage reported to the
request's meters), collecting (non-streaming) with disconnect watching, Server-Sent Events
framing, and token logprobs and usage in the OpenAI shapes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from forge_kernel.engine.types import CompletionDelta, SamplingParams, TokenLogprob, Usage
from forge_kernel.usage import report_usage

if TYPE_CHECKING:
    from starlette.requests import Request

DISCONNECT_POLL_SECONDS = 0.1


@dataclass(slots=True)
class Choice:
    """Everything one choice produced."""

    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None


class ClientDisconnected(Exception):
    """The client went away; the request was aborted and its KV freed."""


async def stream(engine: Any, request_id: str, prompt_ids: list[int], params: SamplingParams,
                 prompt_param: str) -> AsyncIterator[CompletionDelta]:
    """The engine's deltas; leaving early aborts the request. Reports usage at the end."""
    async for delta in engine.generate(request_id, prompt_ids, params, prompt_param):
        if delta.usage is not None:
            report_usage(delta.usage.prompt_tokens, delta.usage.completion_tokens)
        yield delta


async def _collect_one(engine: Any, request_id: str, prompt_ids: list[int],
                       params: SamplingParams, prompt_param: str) -> tuple[list[Choice], Usage]:
    choices = [Choice(i) for i in range(params.n)]
    usage = Usage()
    async for delta in stream(engine, request_id, prompt_ids, params, prompt_param):
        choice = choices[delta.index]
        choice.text += delta.text
        choice.token_ids += delta.token_ids
        choice.logprobs += delta.logprobs or []
        if delta.finish_reason is not None:
            choice.finish_reason = delta.finish_reason
        if delta.usage is not None:
            usage = delta.usage
    return choices, usage


async def collect(request: Request, engine: Any, request_id: str, prompts: list[list[int]],
                  params: SamplingParams, prompt_param: str) -> tuple[list[Choice], Usage]:
    """Run every prompt to completion; if the client disconnects meanwhile, abort them all
    (freeing their KV) and raise :class:`ClientDisconnected`."""
    jobs = [asyncio.ensure_future(_collect_one(engine, f"{request_id}-{i}", ids, params,
                                               prompt_param))
            for i, ids in enumerate(prompts)]

    async def cancel_all() -> None:
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)

    try:
        pending = set(jobs)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=DISCONNECT_POLL_SECONDS)
            if any(job.done() and not job.cancelled() and job.exception() for job in jobs):
                break  # one prompt failed: the request fails, the others are aborted
            if pending and await request.is_disconnected():
                await cancel_all()
                raise ClientDisconnected(request_id)
    except asyncio.CancelledError:
        await cancel_all()
        raise
    failed = [job for job in jobs if job.done() and not job.cancelled() and job.exception()]
    if failed:
        await cancel_all()
        raise failed[0].exception()
    results = [job.result() for job in jobs]
    choices: list[Choice] = []
    total = Usage()
    for offset, (prompt_choices, usage) in enumerate(results):
        for choice in prompt_choices:
            choice.index += offset * params.n
            choices.append(choice)
        add_usage(total, usage)
    return choices, total


def sse(payload: dict[str, Any] | str) -> str:
    """One Server-Sent Events frame: ``data: <json>`` (or a literal such as ``[DONE]``)."""
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


def add_usage(total: Usage, usage: Usage) -> Usage:
    """Add ``usage`` into ``total`` (several prompts or choices of one request)."""
    total.prompt_tokens += usage.prompt_tokens
    total.completion_tokens += usage.completion_tokens
    total.cached_tokens += usage.cached_tokens
    return total


def usage_json(usage: Usage) -> dict[str, Any]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens}}


def _token_text(tokenizer: Any, token_id: int) -> str:
    return tokenizer.decode([token_id], skip_special_tokens=False)


def chat_logprobs(tokenizer: Any, entries: list[TokenLogprob]) -> dict[str, Any]:
    """``choices[].logprobs`` of a chat completion."""
    def item(token_id: int, logprob: float) -> dict[str, Any]:
        text = _token_text(tokenizer, token_id)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    return {"content": [{**item(e.token_id, e.logprob),
                         "top_logprobs": [item(t, lp) for t, lp in e.top]} for e in entries]}


def completion_logprobs(tokenizer: Any, entries: list[TokenLogprob],
                        start_offset: int = 0) -> dict[str, Any]:
    """``choices[].logprobs`` of a text completion."""
    tokens, offsets, offset = [], [], start_offset
    for e in entries:
        text = _token_text(tokenizer, e.token_id)
        tokens.append(text)
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [{_token_text(tokenizer, t): lp for t, lp in e.top} for e in entries],
            "text_offset": offsets}
