"""Server-side tools on ``/v1/chat/completions``: the request extra ``forge_tools``.

``"forge_tools": ["rag_search"]`` adds the named tools (registered through
``forge_register_tools``) to the request's ``tools``; when the model calls one, the server runs
it and generates again, up to ``forge_max_tool_rounds`` rounds of calls (default ``[structured]
max_tool_rounds``). The loop is :func:`forge_plugin_structured.tools.agent.run_agent`; this
module gives it a ``generate`` that prepares and runs one round on the engine. The reply is an
ordinary chat completion (the final message; ``usage`` summed over every round) plus
``forge_tool_calls``: every call the server ran, with its ``output``. Not streamed (``stream``
with ``forge_tools`` is a 400), one choice (``n`` must be 1).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from forge_plugin_protocol.prepare import Prepared, prepare
from forge_plugin_protocol.protocol import ChatCompletionRequest, ChatMessage
from forge_plugin_protocol.streaming import ClientDisconnected, add_usage, collect, usage_json
from forge_plugin_protocol.tools import server_tools

from forge_kernel.engine.types import InvalidRequest, Usage
from forge_plugin_openai.chat import CLIENT_CLOSED, headers


def _check(body: ChatCompletionRequest) -> None:
    if body.stream:
        raise InvalidRequest("stream: server-side tools (forge_tools) reply in one piece; "
                             "send stream=false", param="stream", code="unsupported_parameter")
    if body.n != 1:
        raise InvalidRequest("n: server-side tools (forge_tools) need n=1", param="n",
                             code="unsupported_parameter")


async def agent_reply(request: Request, body: ChatCompletionRequest, first: Prepared,
                      head: dict[str, Any]) -> Response:
    """Run the agent loop for ``body`` (already prepared once as ``first``)."""
    from forge_plugin_structured import config
    from forge_plugin_structured.tools.agent import run_agent

    _check(body)
    server = request.app.state.forge
    tools = server_tools(server, body)
    total = Usage()
    pending = [first]  # round 0 was prepared by the route (it validated the request)

    async def generate(messages: list[dict[str, Any]], tool_choice: Any):
        if pending and tool_choice == body.tool_choice:
            p = pending.pop()
        else:
            pending.clear()
            round_body = body.model_copy(update={
                "messages": [ChatMessage.model_validate(m) for m in messages],
                "tool_choice": tool_choice})
            p = prepare(server, round_body)
        choices, usage = await collect(request, server.engine, p.request_id, p.prompts,
                                       p.params, "messages")
        add_usage(total, usage)
        return choices[0].text, choices[0].finish_reason, p.tools

    rounds = body.forge_max_tool_rounds or config.CONFIG.max_tool_rounds
    try:
        result = await run_agent([m.model_dump(exclude_none=True) for m in body.messages],
                                 body.tool_choice, tools, generate, rounds)
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED)
    reply = {**head, "object": "chat.completion",
             "choices": [{"index": 0, "message": result.message, "logprobs": None,
                          "finish_reason": result.finish_reason}],
             "usage": usage_json(total),
             "forge_tool_calls": [c.openai() for c in result.calls],
             "forge_tool_rounds": result.rounds}
    return JSONResponse(reply, headers=headers(first.request_id))
