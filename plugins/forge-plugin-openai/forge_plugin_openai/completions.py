"""``POST /v1/chat/completions`` and ``POST /v1/completions``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from forge_plugin_protocol.errors import APIError, error_body
from forge_plugin_protocol.prepare import Prepared, prepare
from forge_plugin_protocol.protocol import ChatCompletionRequest, CompletionRequest
from forge_plugin_protocol.streaming import (
    ClientDisconnected,
    add_usage,
    chat_logprobs,
    collect,
    completion_logprobs,
    sse,
    stream,
    usage_json,
)

from forge_kernel.engine.types import InvalidRequest, Usage
from forge_kernel.log import bind_request_id

router = APIRouter()
CLIENT_CLOSED = 499
"""Status logged for requests whose client disconnected (nginx's convention)."""


def _prepare(request: Request, body: Any) -> tuple[Any, Prepared, dict[str, Any]]:
    """The shared :func:`~forge_plugin_protocol.prepare.prepare`, plus the response head."""
    server = request.app.state.forge
    prepared = prepare(server, body)
    bind_request_id(prepared.request_id)
    head = {"id": prepared.request_id, "created": int(time.time()),
            "model": server.model_name, "system_fingerprint": request.app.state.fingerprint}
    return server.engine, prepared, head


def _headers(request_id: str) -> dict[str, str]:
    return {"x-request-id": request_id}


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    engine, p, head = _prepare(request, body)
    request_id, [prompt_ids], params = p.request_id, p.prompts, p.params
    if body.stream:
        return StreamingResponse(_chat_stream(engine, request_id, head, prompt_ids, params,
                                              body.include_usage),
                                 media_type="text/event-stream", headers=_headers(request_id))
    try:
        choices, usage = await collect(request, engine, request_id, p.prompts, params,
                                       "messages")
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED)
    tokenizer = engine.tokenizer
    result = {**head, "object": "chat.completion", "choices": [
        {"index": c.index, "message": {"role": "assistant", "content": c.text},
         "logprobs": chat_logprobs(tokenizer, c.logprobs) if params.logprobs is not None
         else None, "finish_reason": c.finish_reason} for c in choices],
        "usage": usage_json(usage)}
    return JSONResponse(result, headers=_headers(request_id))


async def _chat_stream(engine, request_id, head, prompt_ids, params,
                       include_usage: bool) -> AsyncIterator[str]:
    base = {**head, "object": "chat.completion.chunk"}
    extra = {"usage": None} if include_usage else {}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None,
              logprobs: Any = None) -> str:
        return sse({**base, "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                                          "finish_reason": finish}], **extra})

    for index in range(params.n):
        yield chunk(index, {"role": "assistant", "content": ""})
    try:
        async for delta in stream(engine, request_id, prompt_ids, params, "messages"):
            if delta.text or delta.logprobs:
                logprobs = (chat_logprobs(engine.tokenizer, delta.logprobs or [])
                            if params.logprobs is not None else None)
                yield chunk(delta.index, {"content": delta.text}, None, logprobs)
            if delta.finish_reason is not None:
                yield chunk(delta.index, {}, delta.finish_reason)
            if delta.usage is not None and include_usage:
                yield sse({**base, "choices": [], "usage": usage_json(delta.usage)})
    except (InvalidRequest, APIError) as exc:
        yield sse(error_body(str(exc), 400, getattr(exc, "param", None),
                              getattr(exc, "code", None)))
    except Exception as exc:  # noqa: BLE001 - the stream is open: report inside it
        yield sse(error_body(f"generation failed: {exc}", 500, None, "internal_error"))
    yield sse("[DONE]")


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Response:
    engine, p, head = _prepare(request, body)
    request_id, prompts, params, echoes = p.request_id, p.prompts, p.params, p.echoes
    if body.stream:
        return StreamingResponse(_completion_stream(engine, request_id, head, prompts, params,
                                                    body.include_usage, echoes),
                                 media_type="text/event-stream", headers=_headers(request_id))
    try:
        choices, usage = await collect(request, engine, request_id, prompts, params, "prompt")
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED)
    out = []
    for c in choices:
        prefix = echoes[c.index // params.n]
        logprobs = (completion_logprobs(engine.tokenizer, c.logprobs, len(prefix))
                    if params.logprobs is not None else None)
        out.append({"index": c.index, "text": prefix + c.text, "logprobs": logprobs,
                    "finish_reason": c.finish_reason})
    return JSONResponse({**head, "object": "text_completion", "choices": out,
                         "usage": usage_json(usage)}, headers=_headers(request_id))


async def _completion_stream(engine, request_id, head, prompts, params, include_usage,
                             echoes) -> AsyncIterator[str]:
    base = {**head, "object": "text_completion"}
    extra = {"usage": None} if include_usage else {}
    total = None
    try:
        for p, ids in enumerate(prompts):  # prompts of one request stream one after another
            for i in range(params.n):
                if echoes[p]:
                    yield sse({**base, "choices": [{"index": p * params.n + i, "text": echoes[p],
                                                     "logprobs": None, "finish_reason": None}],
                                **extra})
            async for delta in stream(engine, f"{request_id}-{p}", ids, params, "prompt"):
                logprobs = (completion_logprobs(engine.tokenizer, delta.logprobs or [])
                            if params.logprobs is not None else None)
                yield sse({**base, "choices": [{"index": p * params.n + delta.index,
                                                 "text": delta.text, "logprobs": logprobs,
                                                 "finish_reason": delta.finish_reason}],
                            **extra})
                if delta.usage is not None:
                    total = add_usage(total or Usage(), delta.usage)
        if include_usage and total is not None:
            yield sse({**base, "choices": [], "usage": usage_json(total)})
    except Exception as exc:  # noqa: BLE001 - the stream is open: report inside it
        yield sse(error_body(f"generation failed: {exc}", 500, None, "internal_error"))
    yield sse("[DONE]")

