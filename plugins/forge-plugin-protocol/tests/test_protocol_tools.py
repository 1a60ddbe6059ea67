"""Tool fields of chat bodies without a model: validation (400s naming the param), the tool
setup and constraint, server-side tools from the registry, and the WebSocket refusal."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from forge_plugin_protocol.prepare import prepare
from forge_plugin_protocol.protocol import ChatCompletionRequest

from forge_kernel.engine.types import InvalidRequest
from forge_kernel.interfaces.tool import Tool

pytest.importorskip("forge_plugin_structured")

ASK = [{"role": "user", "content": "weather?"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


class Lookup(Tool):
    name = "lookup"
    description = "Look a word up"
    parameters = {"type": "object", "properties": {"word": {"type": "string"}}}

    def __call__(self, **arguments) -> str:
        return arguments["word"].upper()


class Registry:
    def names(self, kind):
        return ["lookup"] if kind == "tool" else []

    def create(self, kind, name):
        return Lookup()


class Tokenizer:
    chat_template = None

    def apply_chat_template(self, messages, add_generation_prompt=True) -> str:
        return "|".join(f"{m['role']}:{m['content']}" for m in messages)

    def encode(self, text, add_special_tokens=True):
        return [ord(c) % 250 + 2 for c in text]


class Engine:
    tokenizer = Tokenizer()
    adapters = ()

    def generation_defaults(self):
        return {}

    def validate(self, ids, params, prompt_param):
        pass


SERVER = SimpleNamespace(engine=Engine(), serves=lambda m: True, registry=Registry())


def body(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest(messages=fields.pop("messages", ASK), **fields)


def error(**fields) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        prepare(SERVER, body(**fields))
    return info.value


def test_tools_become_a_setup_a_prompt_and_a_constraint():
    p = prepare(SERVER, body(tools=[WEATHER], tool_choice="required"))
    assert p.tools.choice == "required" and [t.name for t in p.tools.callable] == ["get_weather"]
    assert p.params.constraint.param == "tools" and "get_weather" in p.params.constraint.value
    text = "".join(chr(i) for i in p.prompts[0])
    assert len(text) > 100  # the preamble listing the tool went into the prompt
    assert not p.tools.parallel and prepare(SERVER, body(
        tools=[WEATHER], parallel_tool_calls=True)).tools.parallel


def test_no_tools_means_no_setup_and_tool_choice_none_no_constraint():
    assert prepare(SERVER, body()).tools is None
    p = prepare(SERVER, body(tools=[WEATHER], tool_choice="none"))
    assert p.tools.callable == [] and p.params.constraint is None


def test_history_with_tool_turns_is_rendered_without_tools():
    history = ASK + [{"role": "assistant", "content": None, "tool_calls": [CALL]},
                     {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    p = prepare(SERVER, body(messages=history))
    assert p.tools is None
    text = "".join(chr(i - 2) for i in p.prompts[0])
    assert "tool_response" in text and "get_weather" in text


@pytest.mark.parametrize(("fields", "param"), [
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
     "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "always"}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]}, "tools[0]"),
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0]"),
    ({"tools": [{"type": "code_interpreter"}]}, "tools[0]"),
    ({"tools": [WEATHER, WEATHER]}, "tools"),
    ({"messages": ASK + [{"role": "tool", "content": "x"}]}, "messages[1].tool_call_id"),
    ({"messages": ASK + [{"role": "tool", "tool_call_id": "call_1", "content": "x"}]},
     "messages[1].tool_call_id"),
    ({"messages": ASK + [{"role": "assistant", "tool_calls": [CALL]},
                         {"role": "tool", "tool_call_id": "call_9", "content": "x"}]},
     "messages[2].tool_call_id"),
    ({"messages": ASK + [{"role": "assistant", "tool_calls": "f()"}]}, "messages[1].tool_calls"),
    ({"messages": ASK + [{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]},
                         {"role": "user", "content": "x"}], "forge_tools": ["nope"]},
     "forge_tools"),
    ({"forge_tools": ["lookup", "lookup"]}, "forge_tools"),
    ({"tools": [{"type": "function", "function": {"name": "lookup"}}],
      "forge_tools": ["lookup"]}, "forge_tools"),
])
def test_bad_tool_input_names_the_param(fields, param):
    assert error(**fields).param == param


def test_invalid_json_arguments_in_history():
    bad = {**CALL, "function": {"name": "get_weather", "arguments": '{"city": '}}
    exc = error(messages=ASK + [{"role": "assistant", "tool_calls": [bad]}])
    assert (exc.param, exc.code) == ("messages[1].tool_calls", "invalid_tool_arguments")
    assert "not valid JSON" in exc.message
    listed = {**CALL, "function": {"name": "get_weather", "arguments": "[1]"}}
    assert error(messages=ASK + [{"role": "assistant", "tool_calls": [listed]}]).code == \
        "invalid_tool_arguments"


def test_tools_and_response_format_conflict():
    exc = error(tools=[WEATHER], response_format={"type": "json_object"})
    assert exc.param == "response_format"


def test_server_tools_join_the_callable_tools():
    p = prepare(SERVER, body(tools=[WEATHER], forge_tools=["lookup"]))
    assert [t.name for t in p.tools.callable] == ["get_weather", "lookup"]
    named = prepare(SERVER, body(forge_tools=["lookup"], tool_choice={
        "type": "function", "function": {"name": "lookup"}}))
    assert named.tools.choice == "named" and "lookup" in named.params.constraint.value


def test_websocket_refuses_tools_but_renders_tool_history():
    for fields, param in [({"tools": [WEATHER]}, "tools"), ({"forge_tools": ["lookup"]},
                                                            "forge_tools")]:
        with pytest.raises(InvalidRequest) as info:
            prepare(SERVER, body(**fields), tool_calls=False)
        assert (info.value.param, info.value.code) == (param, "unsupported_parameter")
    history = ASK + [{"role": "assistant", "tool_calls": [CALL]},
                     {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    assert prepare(SERVER, body(messages=history), tool_calls=False).tools is None
