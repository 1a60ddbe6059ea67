"""``POST /v1/completions`` (chat completions are :mod:`forge_plugin_openai.chat`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from forge_plugin_protocol.errors import error_body
from forge_plugin_protocol.protocol import CompletionRequest
from forge_plugin_protocol.streaming import (
    ClientDisconnected,
    add_usage,
    collect,
    completion_logprobs,
    sse,
    stream,
    usage_json,
)

from forge_kernel.engine.types import Usage
from forge_plugin_openai.chat import CLIENT_CLOSED, headers, prepare_request

router = APIRouter()


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Response:
    engine, p, head = prepare_request(request, body)
    request_id, prompts, params, echoes = p.request_id, p.prompts, p.params, p.echoes
    if body.stream:
        return StreamingResponse(_completion_stream(engine, request_id, head, prompts, params,
                                                    body.include_usage, echoes),
                                 media_type="text/event-stream", headers=headers(request_id))
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
                         "usage": usage_json(usage)}, headers=headers(request_id))


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

