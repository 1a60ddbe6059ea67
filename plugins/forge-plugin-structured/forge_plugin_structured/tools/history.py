"""Tool turns in a chat history, validated the way OpenAI does before anything is rendered.

* an assistant message's ``tool_calls`` is a list of ``{"id", "type": "function", "function":
  {"name", "arguments"}}`` whose ``arguments`` is JSON text (an object; a dict is accepted);
* a ``role: "tool"`` message has a ``tool_call_id`` and answers a call of the assistant
  message it follows (directly or after other tool messages).

Errors are :class:`InvalidRequest` naming the message (``messages[i].tool_calls``,
``messages[i].tool_call_id``); invalid JSON arguments have code ``invalid_tool_arguments``.
"""

from __future__ import annotations

import json
from typing import Any

from forge_kernel.engine.types import InvalidRequest


def call_arguments(index: int, call: Any) -> tuple[str, Any]:
    """``(name, arguments as a JSON value)`` of history call ``call`` in ``messages[index]``."""
    param = f"messages[{index}].tool_calls"
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise InvalidRequest(f"{param}: each call needs function.name", param=param,
                             code="invalid_value")
    raw = fn.get("arguments")
    if isinstance(raw, dict):
        return fn["name"], raw
    if raw is None or raw == "":
        return fn["name"], {}
    if not isinstance(raw, str):
        raise InvalidRequest(f"{param}: arguments of {fn['name']!r} must be a JSON string",
                             param=param, code="invalid_tool_arguments")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InvalidRequest(f"{param}: arguments of {fn['name']!r} are not valid JSON: "
                             f"{exc}", param=param, code="invalid_tool_arguments") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{param}: arguments of {fn['name']!r} must be a JSON object",
                             param=param, code="invalid_tool_arguments")
    return fn["name"], value


def check_messages(messages: list[dict[str, Any]]) -> None:
    """Raise :class:`InvalidRequest` for the first malformed tool turn in ``messages``."""
    open_ids: set[str] | None = None  # ids the current run of tool messages may answer
    for i, m in enumerate(messages):
        role = m.get("role")
        calls = m.get("tool_calls")
        if role == "tool":
            call_id = m.get("tool_call_id")
            param = f"messages[{i}].tool_call_id"
            if not isinstance(call_id, str) or not call_id:
                raise InvalidRequest(f"messages[{i}]: a tool message needs tool_call_id (the "
                                     f"id of the call it answers)", param=param)
            if open_ids is None:
                raise InvalidRequest(f"messages[{i}]: a tool message must follow an assistant "
                                     f"message with tool_calls", param=param)
            if open_ids and call_id not in open_ids:
                raise InvalidRequest(f"messages[{i}]: tool_call_id {call_id!r} answers no "
                                     f"call of the preceding assistant message", param=param)
            continue
        open_ids = None
        if calls is None:
            continue
        if role != "assistant" or not isinstance(calls, list):
            raise InvalidRequest(f"messages[{i}].tool_calls must be a list on an assistant "
                                 f"message", param=f"messages[{i}].tool_calls")
        for call in calls:
            call_arguments(i, call)
        open_ids = {c["id"] for c in calls if isinstance(c.get("id"), str)}
