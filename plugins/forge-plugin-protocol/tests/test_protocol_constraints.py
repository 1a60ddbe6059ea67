"""response_format / guided_* in request bodies become the kernel's ConstraintSpec."""

from __future__ import annotations

import pytest
from forge_plugin_protocol.protocol import ChatCompletionRequest, CompletionRequest

from forge_kernel.errors import InvalidRequest

MESSAGES = [{"role": "user", "content": "hi"}]
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def chat(**fields):
    return ChatCompletionRequest(messages=MESSAGES, **fields).to_params({})


def test_free_text_has_no_constraint():
    assert chat().constraint is None
    assert chat(response_format={"type": "text"}).constraint is None


def test_response_format_and_guided_fields():
    pytest.importorskip("forge_plugin_structured")
    spec = chat(response_format={"type": "json_schema",
                                 "json_schema": {"name": "x", "schema": SCHEMA}}).constraint
    assert (spec.kind, spec.value, spec.param) == ("json_schema", SCHEMA, "response_format")
    assert chat(response_format={"type": "json_object"}).constraint.kind == "json_object"
    spec = CompletionRequest(prompt="x", guided_choice=["yes", "no"]).to_params({}).constraint
    assert (spec.kind, spec.value, spec.param) == ("choice", ["yes", "no"], "guided_choice")
    assert CompletionRequest(prompt="x", guided_regex="[0-9]+").to_params({}).constraint.kind \
        == "regex"


def test_bad_or_conflicting_constraints_name_the_field():
    pytest.importorskip("forge_plugin_structured")
    with pytest.raises(InvalidRequest) as info:
        chat(response_format={"type": "xml"})
    assert info.value.param == "response_format"
    with pytest.raises(InvalidRequest) as info:
        chat(response_format={"type": "json_object"}, guided_regex="a+")
    assert info.value.param == "guided_regex"
