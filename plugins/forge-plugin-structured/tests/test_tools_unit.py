"""Tool calling without a model: request validation, the prompt format, the call grammar, and
the output parser (streamed in every possible chunking == parsed at once)."""

from __future__ import annotations

import json
import random

import pytest
from forge_plugin_structured.tools.grammar import calls_grammar, tool_constraint
from forge_plugin_structured.tools.parser import ToolCallParser, parse_output
from forge_plugin_structured.tools.prompt import forge_messages
from forge_plugin_structured.tools.spec import parse_tools

from forge_kernel.engine.types import InvalidRequest

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"tz": {"type": "string"}}}}}

CALL1 = '{"name": "get_weather", "arguments": {"city": "Paris {center}"}}'
CALL2 = '{"name": "get_time", "arguments": {"tz": "UTC"}}'
OUTPUT = f"Let me check.\n<tool_call>\n{CALL1}\n</tool_call>\n<tool_call>\n{CALL2}\n</tool_call>"


def test_parse_whole_output():
    content, calls = parse_output(OUTPUT)
    assert content == "Let me check."
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris {center}"}), ("get_time", {"tz": "UTC"})]
    assert all(c.id.startswith("call_") for c in calls) and calls[0].id != calls[1].id


def test_plain_text_is_content():
    assert parse_output("Hello <tool but no call") == ("Hello <tool but no call", [])


@pytest.mark.parametrize("seed", range(20))
def test_streamed_chunks_reassemble_to_the_same_calls(seed):
    rng = random.Random(seed)
    parser, pieces, at = ToolCallParser(), [], 0
    while at < len(OUTPUT):
        step = rng.randint(1, 7)
        pieces.append(OUTPUT[at:at + step])
        at += step
    deltas = [d for p in pieces for d in parser.feed(p)] + parser.finish()
    content = "".join(d.content for d in deltas)
    args: dict[int, str] = {}
    names = {}
    for d in deltas:
        if d.call is not None:
            names[d.index] = d.call.name
        if d.index is not None:
            args[d.index] = args.get(d.index, "") + d.arguments
    _, whole = parse_output(OUTPUT)
    assert content.strip() == "Let me check."
    assert names == {0: "get_weather", 1: "get_time"}
    assert [args[0], args[1]] == [c.arguments for c in whole]


def test_truncated_call_keeps_partial_arguments():
    content, calls = parse_output('<tool_call>\n{"name": "get_weather", "arguments": {"ci')
    assert content is None and calls[0].name == "get_weather"
    assert calls[0].arguments == '{"ci'


def test_tool_fields_are_validated():
    assert parse_tools(None, None, None) is None
    setup = parse_tools([WEATHER, TIME], {"type": "function",
                                          "function": {"name": "get_time"}}, False)
    assert setup.choice == "named" and [t.name for t in setup.callable] == ["get_time"]
    assert not setup.parallel and parse_tools([WEATHER], None, None).choice == "auto"
    bad = [([WEATHER], "sometimes", None, "tool_choice"),
           ([WEATHER], {"type": "function", "function": {"name": "nope"}}, None, "tool_choice"),
           ([WEATHER, WEATHER], None, None, "tools"),
           ([{"type": "function", "function": {"name": "has space"}}], None, None, "tools[0]"),
           ([{"type": "retrieval"}], None, None, "tools[0]"),
           (None, "required", None, "tool_choice"),
           ([WEATHER], None, "yes", "parallel_tool_calls")]
    for tools, choice, parallel, param in bad:
        with pytest.raises(InvalidRequest) as info:
            parse_tools(tools, choice, parallel)
        assert info.value.param == param


def test_constraint_per_choice():
    assert tool_constraint(parse_tools([WEATHER], "none", None)) is None
    auto = tool_constraint(parse_tools([WEATHER], "auto", None))
    assert auto.kind == "grammar" and auto.value["trigger"] == "<tool_call>"
    required = tool_constraint(parse_tools([WEATHER, TIME], "required", False))
    assert isinstance(required.value, str) and "get_time" in required.value
    assert required.value.startswith("start: call\n")
    assert calls_grammar(parse_tools([WEATHER], "required", True)).startswith(
        'start: call ("\\n" call)*')


def test_forge_prompt_format():
    setup = parse_tools([WEATHER], "auto", None)
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "user", "content": "Thanks. And tomorrow?"}]
    out = forge_messages(messages, setup)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user"]
    assert "get_weather" in out[0]["content"] and "<tool_call>" in out[0]["content"]
    assert out[2]["content"] == ('<tool_call>\n{"name": "get_weather", "arguments": '
                                 '{"city": "Paris"}}\n</tool_call>')
    assert out[3]["content"] == "<tool_response>\nsunny\n</tool_response>\n\nThanks. And tomorrow?"


def test_invalid_arguments_in_history_is_a_clear_error():
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]
    with pytest.raises(InvalidRequest) as info:
        forge_messages(messages, None)
    assert info.value.param == "messages[1].tool_calls"
    assert info.value.code == "invalid_tool_arguments"


@pytest.mark.parametrize("tail", ["\n<tool_call", "\n<tool_call>\n{\"na", "\n"])
def test_a_next_call_cut_before_its_name_is_dropped(tail):
    content, calls = parse_output(f"<tool_call>\n{CALL2}\n</tool_call>{tail}")
    assert content is None and [c.name for c in calls] == ["get_time"]
    assert parse_output("<tool_call")[0] == "<tool_call"  # before any call it was text


@pytest.mark.parametrize("cut", ["", "\n", "\n</", "\n</tool_call"])
def test_a_call_cut_inside_its_closing_tag_keeps_exact_arguments(cut):
    text = f"<tool_call>\n{CALL2}{cut}"
    _, [whole] = parse_output(text)
    assert json.loads(whole.arguments) == {"tz": "UTC"}
    parser = ToolCallParser()
    deltas = [d for ch in text for d in parser.feed(ch)] + parser.finish()
    assert "".join(d.arguments for d in deltas) == whole.arguments
