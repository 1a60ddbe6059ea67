"""What a chat endpoint calls for tools: the setup, the prompt, the constraint, and the reply
(a message, or streamed ``delta`` objects) in the OpenAI shapes.

An endpoint does, per request::

    check_messages(messages)                                # tool turns in the history
    setup = tool_setup(body.tools, body.tool_choice, body.parallel_tool_calls)
    prompt = render(tokenizer, messages, setup)             # when setup or tool messages
    params.constraint = constraint(setup, body.response_format, guided)
    message, finish = reply_message(text, finish, setup)    # non-streaming
    reply = StreamedReply(setup); reply.feed(text) / reply.finish(finish)   # streaming
"""

from __future__ import annotations

from typing import Any

from forge_kernel.engine.types import InvalidRequest
from forge_kernel.interfaces.constraint import ConstraintSpec
from forge_plugin_structured.api import request_constraint
from forge_plugin_structured.tools.grammar import tool_constraint
from forge_plugin_structured.tools.history import check_messages
from forge_plugin_structured.tools.parser import Delta, ToolCallParser, parse_output
from forge_plugin_structured.tools.prompt import render
from forge_plugin_structured.tools.spec import ToolSetup, parse_tools

tool_setup = parse_tools

__all__ = ["StreamedReply", "check_messages", "constraint", "needs_tool_format", "render",
           "reply_message", "tool_setup"]


def needs_tool_format(messages: list[dict[str, Any]], setup: ToolSetup | None) -> bool:
    """Whether the prompt must go through :func:`render` (tools, or tool turns in history)."""
    return setup is not None or any(m.get("role") == "tool" or m.get("tool_calls")
                                    for m in messages)


def constraint(setup: ToolSetup | None, response_format: Any = None,
               **guided: Any) -> ConstraintSpec | None:
    """The request's constraint: the tool-call grammar when tools may be called, else what
    ``response_format`` / ``guided_*`` ask for (both at once is a 400)."""
    spec = tool_constraint(setup) if setup is not None else None
    other = request_constraint(response_format, **guided)
    if spec is not None and other is not None:
        raise InvalidRequest(f"{other.param} cannot be combined with tools unless "
                             f"tool_choice is 'none'", param=other.param)
    return spec or other


def reply_message(text: str, finish_reason: str | None,
                  setup: ToolSetup | None) -> tuple[dict[str, Any], str | None]:
    """``(choices[].message, finish_reason)`` of a non-streamed reply."""
    if setup is None or not setup.callable:
        return {"role": "assistant", "content": text}, finish_reason
    content, calls = parse_output(text)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [c.openai() for c in calls]
        if finish_reason == "stop":
            finish_reason = "tool_calls"
    return message, finish_reason


class StreamedReply:
    """One choice's streamed reply: text in, OpenAI ``delta`` objects out."""

    def __init__(self, setup: ToolSetup | None) -> None:
        self._parser = ToolCallParser() if setup is not None and setup.callable else None

    def feed(self, text: str) -> list[dict[str, Any]]:
        if self._parser is None:
            return [{"content": text}] if text else []
        return [_delta(d) for d in self._parser.feed(text)]

    def finish(self, finish_reason: str | None) -> tuple[list[dict[str, Any]], str | None]:
        if self._parser is None:
            return [], finish_reason
        deltas = [_delta(d) for d in self._parser.finish()]
        if self._parser.calls and finish_reason == "stop":
            finish_reason = "tool_calls"
        return deltas, finish_reason


def _delta(d: Delta) -> dict[str, Any]:
    if d.index is None:
        return {"content": d.content}
    if d.call is not None:
        return {"tool_calls": [{"index": d.index, "id": d.call.id, "type": "function",
                                "function": {"name": d.call.name, "arguments": ""}}]}
    return {"tool_calls": [{"index": d.index, "function": {"arguments": d.arguments}}]}
