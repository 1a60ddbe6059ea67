"""The shared protocol without a model: ``prepare`` on a small fake engine, the OpenAI error
objects, SSE framing and usage sums."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
from forge_plugin_protocol.errors import APIError, error_body, model_not_found, validation_param
from forge_plugin_protocol.prepare import prepare
from forge_plugin_protocol.protocol import ChatCompletionRequest, CompletionRequest
from forge_plugin_protocol.streaming import add_usage, sse, stream, usage_json

from forge_kernel.engine.types import CompletionDelta, InvalidRequest, Usage
from forge_kernel.usage import usage_listener


class Tokenizer:
    def apply_chat_template(self, messages, add_generation_prompt=True) -> str:
        return "|".join(m["content"] for m in messages) + (">" if add_generation_prompt else "")

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return ([1] if add_special_tokens else []) + [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids if i > 1)


class Engine:
    tokenizer = Tokenizer()
    adapters = ()

    def generation_defaults(self) -> dict:
        return {"temperature": 0.5}

    def validate(self, ids, params, prompt_param) -> None:
        if len(ids) > 8:
            raise InvalidRequest("too long", param=prompt_param, code="context_length_exceeded")

    async def generate(self, request_id, prompt_ids, params, prompt_param):
        yield CompletionDelta(0, "a", token_ids=[5])
        yield CompletionDelta(0, "b", token_ids=[6], finish_reason="length",
                              usage=Usage(len(prompt_ids), 2))


SERVER = SimpleNamespace(engine=Engine(), serves=lambda model: model in (None, "m"))


def test_prepare_chat_renders_tokenizes_and_converts() -> None:
    body = ChatCompletionRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    p = prepare(SERVER, body)
    assert p.chat and p.prompt_param == "messages" and p.echoes == [""]
    assert p.prompts == [[ord("h"), ord("i"), ord(">")]]  # the template holds BOS: none added
    assert (p.params.max_tokens, p.params.temperature) == (3, 0.5)  # model default applies
    assert p.request_id.startswith("chatcmpl-") and p.num_choices == 1


def test_prepare_completion_prompts_echo_and_prefix() -> None:
    body = CompletionRequest(prompt=["ab", "c"], echo=True, n=2, temperature=0)
    p = prepare(SERVER, body, "wscmpl")
    assert not p.chat and p.prompt_param == "prompt"
    assert p.prompts == [[1, 97, 98], [1, 99]] and p.echoes == ["ab", "c"]
    assert p.num_choices == 4 and p.request_id.startswith("wscmpl-")


@pytest.mark.parametrize("body, param", [
    (ChatCompletionRequest(messages=[{"role": "user", "content": "x" * 20}]), "messages"),
    (CompletionRequest(prompt="x" * 20), "prompt"),
])
def test_prepare_errors_name_the_parameter(body, param) -> None:
    with pytest.raises(InvalidRequest) as info:
        prepare(SERVER, body)
    assert (info.value.param, info.value.code) == (param, "context_length_exceeded")


def test_unknown_model_and_unsupported_fields() -> None:
    with pytest.raises(APIError) as info:
        prepare(SERVER, CompletionRequest(prompt="a", model="other"))
    assert (info.value.status, info.value.code) == (404, "model_not_found")
    with pytest.raises(InvalidRequest, match="suffix"):
        prepare(SERVER, CompletionRequest(prompt="a", suffix="z"))


def test_error_objects() -> None:
    assert error_body("bad", 400, "n", "invalid_value") == {"error": {
        "message": "bad", "type": "invalid_request_error", "param": "n", "code": "invalid_value"}}
    assert error_body("slow down", 429)["error"]["type"] == "rate_limit_error"
    assert error_body("boom", 500)["error"]["type"] == "server_error"
    assert model_not_found("x").message == "The model `x` does not exist."
    assert validation_param(("body", "messages", 0, "role")) == "messages.0.role"
    assert validation_param(("body",)) is None


def test_sse_and_usage() -> None:
    assert sse("[DONE]") == "data: [DONE]\n\n"
    assert json.loads(sse({"a": 1})[len("data: "):]) == {"a": 1}
    total = add_usage(Usage(1, 2, 0), Usage(3, 4, 1))
    assert usage_json(total) == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10,
                                 "prompt_tokens_details": {"cached_tokens": 1}}


def test_stream_reports_usage_to_the_request_listeners() -> None:
    seen: list[tuple[int, int]] = []

    async def run() -> list[str]:
        with usage_listener(lambda p, c: seen.append((p, c))):
            return [d.text async for d in stream(Engine(), "r", [1, 2, 3], None, "prompt")]

    assert asyncio.run(run()) == ["a", "b"]
    assert seen == [(3, 2)]
