"""The OpenAI shapes of tool replies (no model): message + finish_reason, streamed deltas that
reassemble (as the openai SDK / LangChain do) to the non-streamed message, and constraint
selection (tools vs response_format / guided_*)."""

from __future__ import annotations

import json

import pytest
from forge_plugin_structured.chat import StreamedReply, constraint, reply_message, tool_setup

from forge_kernel.engine.types import InvalidRequest

TOOL = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}}
TEXT = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'


def test_message_with_calls():
    message, finish = reply_message(TEXT, "stop", tool_setup([TOOL], "required", None))
    assert finish == "tool_calls" and message["content"] is None
    [call] = message["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "add"
    assert json.loads(call["function"]["arguments"]) == {"a": 1, "b": 2}
    assert reply_message("hi", "stop", None) == ({"role": "assistant", "content": "hi"}, "stop")


def test_stream_reassembles_like_the_sdk():
    setup = tool_setup([TOOL], "auto", None)
    reply, deltas = StreamedReply(setup), []
    for i in range(0, len(TEXT), 3):
        deltas += reply.feed(TEXT[i:i + 3])
    tail, finish = reply.finish("stop")
    deltas += tail
    calls: dict[int, dict] = {}
    for d in deltas:
        for c in d.get("tool_calls", []):
            entry = calls.setdefault(c["index"], {"id": None, "name": "", "arguments": ""})
            entry["id"] = c.get("id") or entry["id"]
            entry["name"] += c.get("function", {}).get("name", "")
            entry["arguments"] += c.get("function", {}).get("arguments", "")
    message, _ = reply_message(TEXT, "stop", setup)
    assert finish == "tool_calls" and calls[0]["name"] == "add"
    assert calls[0]["arguments"] == message["tool_calls"][0]["function"]["arguments"]


def test_constraint_selection():
    assert constraint(None) is None
    assert constraint(None, {"type": "json_object"}).kind == "json_object"
    assert constraint(None, guided_choice=["a", "b"]).param == "guided_choice"
    assert constraint(tool_setup([TOOL], "required", None)).param == "tools"
    assert constraint(tool_setup([TOOL], "none", None), {"type": "json_object"}).kind == \
        "json_object"
    strict = constraint(None, {"type": "json_schema", "json_schema": {
        "name": "x", "strict": True, "schema": {"type": "object", "properties": {}}}})
    assert strict.value["additionalProperties"] is False
    for kwargs, param in [({"response_format": {"type": "xml"}}, "response_format"),
                          ({"response_format": {"type": "json_object"},
                            "guided_regex": "a"}, "guided_regex"),
                          ({"response_format": {"type": "json_schema"}}, "response_format")]:
        with pytest.raises(InvalidRequest) as info:
            constraint(None, **kwargs)
        assert info.value.param == param
    with pytest.raises(InvalidRequest) as info:
        constraint(tool_setup([TOOL], "auto", None), {"type": "json_object"})
    assert info.value.param == "response_format"
