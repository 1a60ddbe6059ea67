"""Parsing of client messages and shapes of server messages (no model, no server)."""

from __future__ import annotations

import json

import pytest
from forge_plugin_protocol.protocol import ChatCompletionRequest, CompletionRequest
from forge_plugin_websocket import messages
from forge_plugin_websocket.config import WebSocketConfig
from forge_plugin_websocket.messages import Cancel, Generate, Ping, ProtocolError, parse

CHAT = {"type": "chat.completion", "id": "c1", "messages": [{"role": "user", "content": "hi"}]}


def _error(raw, **kwargs) -> dict:
    with pytest.raises(ProtocolError) as info:
        parse(raw if isinstance(raw, str | bytes) else json.dumps(raw), **kwargs)
    return info.value.to_message()


def test_generate_messages_use_the_openai_models():
    msg = parse(json.dumps({**CHAT, "max_tokens": 8, "temperature": 0, "user": "x"}))
    assert isinstance(msg, Generate) and msg.kind == "chat.completion" and msg.id == "c1"
    assert isinstance(msg.body, ChatCompletionRequest)
    assert msg.body.max_tokens == 8 and msg.body.temperature == 0.0
    msg = parse(json.dumps({"type": "completion", "id": "x", "prompt": [1, 2], "n": 2}))
    assert isinstance(msg.body, CompletionRequest) and msg.body.prompts() == [[1, 2]]
    assert msg.body.n == 2 and msg.body.max_tokens == 16  # the HTTP API's default


def test_cancel_and_ping():
    assert parse('{"type": "cancel", "id": "c1"}') == Cancel("c1")
    assert parse('{"type": "ping"}') == Ping(None)
    assert parse('{"type": "ping", "data": {"n": 1}}') == Ping({"n": 1})
    assert messages.pong() == {"type": "pong"}
    assert messages.pong({"n": 1}) == {"type": "pong", "data": {"n": 1}}


def test_malformed_messages_are_errors_without_id():
    error = _error("{not json")
    assert error["type"] == "error" and error["id"] is None
    assert error["error"]["code"] == "invalid_json"
    assert error["error"]["type"] == "invalid_request_error"
    assert _error("[1, 2]")["error"]["code"] == "invalid_message"
    assert _error(b"\x00binary")["error"]["code"] == "invalid_message"
    assert _error({"type": "cancel"})["error"]["param"] == "id"
    assert _error({"type": "cancel", "id": 7})["error"]["param"] == "id"
    assert _error({"type": "cancel", "id": ""})["error"]["param"] == "id"
    assert _error({"type": "cancel", "id": "x" * 9}, max_id_length=8)["error"]["param"] == "id"


def test_unknown_type_echoes_a_usable_id():
    error = _error({"type": "embeddings", "id": "e1"})
    assert error["id"] == "e1" and error["error"]["param"] == "type"
    assert _error({"id": "e1"})["id"] == "e1"
    assert _error({"type": "nope", "id": "y" * 500})["id"] is None


@pytest.mark.parametrize(("extra", "param", "text"), [
    ({"temperature": 5}, "temperature", "temperature: Input should be less than or equal to 2"),
    ({"n": 0}, "n", "n: Input should be greater than or equal to 1"),
    ({"messages": []}, "messages",
     "messages: List should have at least 1 item after validation, not 0"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role", None),
])
def test_validation_errors_name_the_parameter_like_http(extra, param, text):
    error = _error({**CHAT, **extra})
    assert error["id"] == "c1"
    assert error["error"]["param"] == param and error["error"]["code"] == "invalid_value"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith(f"{param}: ")
    if text:
        assert error["error"]["message"] == text


def test_missing_required_field():
    error = _error({"type": "completion", "id": "c2"})
    assert error["error"]["param"] == "prompt" and "Field required" in error["error"]["message"]


def test_server_message_shapes():
    assert messages.delta("a", 1, "x") == {"type": "delta", "id": "a", "index": 1, "text": "x"}
    assert messages.delta("a", 0, "x", {"content": []})["logprobs"] == {"content": []}
    done = messages.final("done", "a", ["stop", "length"], {"total_tokens": 3}, "wscmpl-1")
    assert done == {"type": "done", "id": "a", "finish_reason": "stop",
                    "choices": [{"index": 0, "finish_reason": "stop"},
                                {"index": 1, "finish_reason": "length"}],
                    "usage": {"total_tokens": 3}, "request_id": "wscmpl-1"}
    error = messages.error("a", "slow down", 429, None, "too_many_generations")
    assert error["error"] == {"message": "slow down", "type": "rate_limit_error", "param": None,
                              "code": "too_many_generations"}


def test_config_section():
    assert WebSocketConfig.from_section(None) == WebSocketConfig()
    assert WebSocketConfig.from_section({"path": "/ws"}).path == "/ws"
    config = WebSocketConfig(max_generations=2)
    assert WebSocketConfig.from_section(config) is config
