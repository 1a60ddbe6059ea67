"""Structured output through a real ``forge serve`` on 127.0.0.1 and the openai SDK."""

from __future__ import annotations

import json

import jsonschema
import openai
import pydantic
import pytest


class Person(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    name: str = pydantic.Field(max_length=20)
    age: int = pydantic.Field(ge=0, le=120)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from forge_kernel.testing.server import start_server

    server = start_server([], tmp_path_factory.mktemp("structured-home"))
    try:
        yield openai.OpenAI(base_url=server.base_url, api_key="unused")
    finally:
        server.stop()


def test_sdk_parse_with_a_pydantic_model(client):
    reply = client.beta.chat.completions.parse(
        model="gemma3-270m", max_tokens=48, temperature=0,
        messages=[{"role": "user", "content": "Give me a person as JSON."}],
        response_format=Person)
    person = reply.choices[0].message.parsed
    assert isinstance(person, Person)
    jsonschema.validate(json.loads(reply.choices[0].message.content), Person.model_json_schema())


def test_guided_choice_on_completions(client):
    reply = client.completions.create(model="gemma3-270m", prompt="Is the sky blue? Answer:",
                                      max_tokens=5, extra_body={"guided_choice": ["yes", "no"]})
    assert reply.choices[0].text in ("yes", "no")


def test_unsupported_schema_feature_is_a_400_naming_it(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="gemma3-270m", max_tokens=4, messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_schema", "json_schema": {
                "name": "s", "schema": {"type": "array", "uniqueItems": True}}})
    error = info.value.body
    assert error["param"] == "response_format" and "uniqueItems" in error["message"]
