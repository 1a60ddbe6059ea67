"""``POST /v1/chat/completions``: JSON and SSE replies, with tool calls.

A request with ``tools`` has a ``ToolSetup`` on its :class:`Prepared` (forge-plugin-structured
builds it and the constraint that keeps calls well-formed); its replies are parsed with
:func:`forge_plugin_structured.chat.reply_message` (non-streamed) or a
:class:`~forge_plugin_structured.chat.StreamedReply` per choice (streamed: ``delta.tool_calls``
pieces shaped like OpenAI's). A request with ``forge_tools`` runs the server-side agent loop
(:mod:`forge_plugin_openai.agent`). Requests without tools import nothing from the plugin.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from forge_plugin_protocol.errors import APIError, error_body
from forge_plugin_protocol.prepare import Prepared, prepare
from forge_plugin_protocol.protocol import ChatCompletionRequest
from forge_plugin_protocol.streaming import (
    ClientDisconnected,
    chat_logprobs,
    collect,
    sse,
    stream,
    usage_json,
)

from forge_kernel.engine.types import InvalidRequest
from forge_kernel.log import bind_request_id

router = APIRouter()
CLIENT_CLOSED = 499
"""Status logged for requests whose client disconnected (nginx's convention)."""


def prepare_request(request: Request, body: Any) -> tuple[Any, Prepared, dict[str, Any]]:
    """The shared :func:`~forge_plugin_protocol.prepare.prepare`, plus the response head."""
    server = request.app.state.forge
    prepared = prepare(server, body)
    bind_request_id(prepared.request_id)
    head = {"id": prepared.request_id, "created": int(time.time()),
            "model": server.model_name, "system_fingerprint": request.app.state.fingerprint}
    return server.engine, prepared, head


def headers(request_id: str) -> dict[str, str]:
    return {"x-request-id": request_id}


def message_of(text: str, finish_reason: str | None, setup: Any) -> tuple[dict, str | None]:
    """``(message, finish_reason)`` of one non-streamed choice."""
    if setup is None:
        return {"role": "assistant", "content": text}, finish_reason
    from forge_plugin_structured.chat import reply_message

    return reply_message(text, finish_reason, setup)


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    engine, p, head = prepare_request(request, body)
    if body.forge_tools:
        from forge_plugin_openai.agent import agent_reply

        return await agent_reply(request, body, p, head)
    request_id, [prompt_ids], params = p.request_id, p.prompts, p.params
    if body.stream:
        return StreamingResponse(_chat_stream(engine, p, head, prompt_ids, body.include_usage),
                                 media_type="text/event-stream", headers=headers(request_id))
    try:
        choices, usage = await collect(request, engine, request_id, p.prompts, params,
                                       "messages")
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED)
    out = []
    for c in choices:
        message, finish = message_of(c.text, c.finish_reason, p.tools)
        out.append({"index": c.index, "message": message,
                    "logprobs": chat_logprobs(engine.tokenizer, c.logprobs)
                    if params.logprobs is not None else None, "finish_reason": finish})
    result = {**head, "object": "chat.completion", "choices": out, "usage": usage_json(usage)}
    return JSONResponse(result, headers=headers(request_id))


def _replies(setup: Any, n: int) -> list[Any] | None:
    if setup is None:
        return None
    from forge_plugin_structured.chat import StreamedReply

    return [StreamedReply(setup) for _ in range(n)]


async def _chat_stream(engine, p: Prepared, head, prompt_ids, include_usage: bool
                       ) -> AsyncIterator[str]:
    params = p.params
    base = {**head, "object": "chat.completion.chunk"}
    extra = {"usage": None} if include_usage else {}
    replies = _replies(p.tools, params.n)

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None,
              logprobs: Any = None) -> str:
        return sse({**base, "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                                          "finish_reason": finish}], **extra})

    for index in range(params.n):
        yield chunk(index, {"role": "assistant", "content": ""})
    try:
        async for delta in stream(engine, p.request_id, prompt_ids, params, "messages"):
            logprobs = (chat_logprobs(engine.tokenizer, delta.logprobs or [])
                        if params.logprobs is not None else None)
            if replies is None:
                pieces = [{"content": delta.text}] if delta.text or delta.logprobs else []
            else:
                pieces = replies[delta.index].feed(delta.text)
                if delta.logprobs and logprobs is not None and not pieces:
                    pieces = [{}]  # the text is held (a possible call start): logprobs go now
            for i, piece in enumerate(pieces):
                yield chunk(delta.index, piece, None, logprobs if i == 0 else None)
            if delta.finish_reason is not None:
                finish = delta.finish_reason
                if replies is not None:
                    tail, finish = replies[delta.index].finish(finish)
                    for piece in tail:
                        yield chunk(delta.index, piece)
                yield chunk(delta.index, {}, finish)
            if delta.usage is not None and include_usage:
                yield sse({**base, "choices": [], "usage": usage_json(delta.usage)})
    except (InvalidRequest, APIError) as exc:
        yield sse(error_body(str(exc), 400, getattr(exc, "param", None),
                              getattr(exc, "code", None)))
    except Exception as exc:  # noqa: BLE001 - the stream is open: report inside it
        yield sse(error_body(f"generation failed: {exc}", 500, None, "internal_error"))
    yield sse("[DONE]")
