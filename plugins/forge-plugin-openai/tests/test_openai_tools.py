"""Tool calling through a real ``forge serve`` (default model, Gemma 3 270M Q4_K_M) on
127.0.0.1: the openai SDK (non-streamed and streamed calls, every ``tool_choice``, a ``role:
tool`` follow-up turn), LangChain's ``bind_tools``, 400s for bad tool input, and the
server-side agent loop (``forge_tools``) running ``rag_search`` over a one-document collection.

Greedy (temperature 0) and short ``max_tokens`` throughout, so every reply is deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest

from forge_kernel.testing.server import ForgeServer, start_server

pytest.importorskip("forge_plugin_structured")

MODEL = "gemma3-270m"
SERVER_ARGS = ["--threads", "2", "--max-model-len", "2048", "--num-blocks", "160",
               "--max-batch-size", "4"]
WEATHER_ARGS = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                "required": ["city"], "additionalProperties": False}
WEATHER = {"type": "function", "function": {"name": "get_weather",
                                            "description": "Current weather in a city",
                                            "parameters": WEATHER_ARGS}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "Local time",
                                         "parameters": {"type": "object", "properties": {
                                             "tz": {"type": "string", "maxLength": 8}},
                                             "required": ["tz"]}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
MANUAL = """# Pump manual

## Warranty

The pump housing is guaranteed for five years.

## Error codes

E17 means the inlet filter is blocked: clean the filter and restart the pump.
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForgeServer]:
    home: Path = tmp_path_factory.mktemp("forge-tools-home")
    srv = start_server(SERVER_ARGS, home, env={"FORGE_RAG_DEFAULT_COLLECTION": "kb"})
    yield srv
    code = srv.stop()
    assert code == 0, f"forge serve exited with {code}:\n{srv.log()[-3000:]}"


@pytest.fixture(scope="module")
def client(server: ForgeServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0,
                         timeout=600)


def create(client, **kwargs):
    kwargs.setdefault("messages", ASK)
    return client.chat.completions.create(model=MODEL, temperature=0, **kwargs)


@pytest.fixture(scope="module")
def required_call(client):
    return create(client, tools=[WEATHER], tool_choice="required", max_tokens=32)


def test_sdk_call_is_valid_json_for_the_schema(required_call):
    choice = required_call.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_ARGS)


def test_streamed_call_reassembles_to_the_same_arguments(client, required_call):
    calls: dict[int, dict] = {}
    finish, content = None, ""
    for chunk in create(client, tools=[WEATHER], tool_choice="required", max_tokens=32,
                        stream=True):
        choice = chunk.choices[0]
        content += choice.delta.content or ""
        for piece in choice.delta.tool_calls or []:
            entry = calls.setdefault(piece.index, {"id": None, "name": "", "arguments": ""})
            if piece.id:
                assert entry["id"] is None and piece.id.startswith("call_")
                entry["id"] = piece.id
            entry["name"] += piece.function.name or ""
            entry["arguments"] += piece.function.arguments or ""
        finish = choice.finish_reason or finish
    [whole] = required_call.choices[0].message.tool_calls
    assert finish == "tool_calls" and content == "" and list(calls) == [0]
    assert calls[0]["name"] == whole.function.name
    assert calls[0]["arguments"] == whole.function.arguments


def test_named_choice_calls_that_tool(client):
    reply = create(client, tools=[WEATHER, TIME], max_tokens=32,
                   tool_choice={"type": "function", "function": {"name": "get_time"}})
    [call] = reply.choices[0].message.tool_calls
    assert call.function.name == "get_time"
    assert set(json.loads(call.function.arguments)) <= {"tz"}


def test_choice_none_answers_in_text(client):
    reply = create(client, tools=[WEATHER], tool_choice="none", max_tokens=4)
    choice = reply.choices[0]
    assert choice.message.tool_calls is None and choice.finish_reason == "length"
    assert isinstance(choice.message.content, str) and choice.message.content


def test_tool_result_follow_up_turn(client, required_call):
    [call] = required_call.choices[0].message.tool_calls
    history = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 degrees."}]
    reply = create(client, messages=history, tools=[WEATHER], tool_choice="none",
                   max_tokens=6)
    plain = create(client, messages=ASK, tool_choice="none", max_tokens=1)
    assert reply.choices[0].message.content and reply.choices[0].finish_reason == "length"
    # the call and its result are in the prompt (the forge format renders both)
    assert reply.usage.prompt_tokens > plain.usage.prompt_tokens + 30


def test_langchain_bind_tools_gets_a_well_formed_call(server):
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        return "sunny"

    llm = ChatOpenAI(base_url=server.base_url, api_key="unused", model=MODEL, temperature=0,
                     max_tokens=32, max_retries=0, timeout=600)
    reply = llm.bind_tools([get_weather], tool_choice="get_weather").invoke(
        "What is the weather in Paris?")
    [call] = reply.tool_calls
    assert call["name"] == "get_weather" and call["id"].startswith("call_")
    assert set(call["args"]) == {"city"} and isinstance(call["args"]["city"], str)
    assert not reply.invalid_tool_calls


@pytest.mark.parametrize(("fields", "param", "code"), [
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice", "invalid_value"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "object"}}]},
     "tools[0]", "invalid_value"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "strnig"}}}}}], "tool_choice": "required"},
     "tools", None),
    ({"messages": ASK + [{"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
      "function": {"name": "get_weather", "arguments": "{\"city\": "}}]}]},
     "messages[1].tool_calls", "invalid_tool_arguments"),
    ({"messages": ASK + [{"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
      "function": {"name": "get_weather", "arguments": "{}"}}]},
      {"role": "tool", "content": "sunny"}]}, "messages[2].tool_call_id", None),
    ({"forge_tools": ["no_such_tool"]}, "forge_tools", "invalid_value"),
    ({"forge_tools": ["rag_search"], "stream": True}, "stream", "unsupported_parameter"),
])
def test_bad_tool_input_is_a_400_naming_the_param(server, fields, param, code):
    body = {"model": MODEL, "messages": ASK, "max_tokens": 4, **fields}
    r = httpx.post(server.base_url + "/chat/completions", json=body, timeout=120)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    if code is not None:
        assert error["code"] == code


def test_server_side_agent_loop_runs_rag_search(server):
    pytest.importorskip("forge_plugin_rag")
    r = httpx.put(server.base_url + "/rag/kb/documents/pump.md", content=MANUAL.encode(),
                  timeout=300)
    assert r.status_code == 200, r.text
    body = {"model": MODEL, "temperature": 0, "max_tokens": 72, "forge_tools": ["rag_search"],
            "forge_max_tool_rounds": 1,
            "tool_choice": {"type": "function", "function": {"name": "rag_search"}},
            "messages": [{"role": "user",
                          "content": "Search the kb collection: what does error E17 mean?"}]}
    r = httpx.post(server.base_url + "/chat/completions", json=body, timeout=900)
    assert r.status_code == 200, r.text
    reply = r.json()
    [ran] = reply["forge_tool_calls"]
    assert ran["function"]["name"] == "rag_search" and ran["id"].startswith("call_")
    assert not ran["is_error"], ran["output"]
    arguments = json.loads(ran["function"]["arguments"])
    assert arguments.get("collection", "kb") == "kb"
    assert "E17 means the inlet filter is blocked" in ran["output"]
    assert "pump.md" in ran["output"]
    # one round of calls, then the answer round (tool_choice "none"): text, no tool_calls
    assert reply["forge_tool_rounds"] == 2
    message = reply["choices"][0]["message"]
    assert "tool_calls" not in message and isinstance(message["content"], str)
    # usage counts both rounds: more than round one alone (a reply cut at 1 token, no call)
    one = httpx.post(server.base_url + "/chat/completions", json={**body, "max_tokens": 1},
                     timeout=300).json()
    assert one["forge_tool_rounds"] == 1 and one["forge_tool_calls"] == []
    assert reply["usage"]["prompt_tokens"] > one["usage"]["prompt_tokens"] + 40
