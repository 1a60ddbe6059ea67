"""The length limits (forge_plugin_structured.limits) on the default model: the bench case that
used to fail (Gemma 3 270M repeating digits of an unbounded integer/number until max_tokens)
now validates, the same request without the digit cap is cut with finish_reason "length", the
closing preference in the last tokens, and the string cap's schema rewrite."""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch
from engine_run import run_all
from forge_plugin_structured import config
from forge_plugin_structured.compiler import LLGuidanceCompiler
from forge_plugin_structured.limits import cap_strings

from forge_kernel.engine.types import SamplingParams
from forge_kernel.interfaces.constraint import ConstraintSpec, mask_words

UNBOUNDED = {"type": "object", "properties": {
    "status": {"enum": ["open", "closed", "pending"]}, "priority": {"type": "integer"},
    "price": {"type": "number"}}, "required": ["status", "priority", "price"],
    "additionalProperties": False}


@pytest.fixture()
def settings(monkeypatch):
    monkeypatch.setattr(config, "CONFIG", config.StructuredConfig())
    return config.CONFIG


def _chat(engine, text: str) -> list[int]:
    tok = engine.tokenizer
    return tok.encode(tok.apply_chat_template([{"role": "user", "content": text}]),
                      add_special_tokens=False)


def _spec(engine, **params) -> SamplingParams:
    """Params with the constraint compiled now, under the settings in effect now."""
    p = SamplingParams(constraint=ConstraintSpec("json_schema", UNBOUNDED), **params)
    engine.validate([2], p)
    return p


def test_unbounded_numbers_validate_and_uncapped_ones_hit_length(engine, settings):
    prompt = _chat(engine, "Give an example as JSON.")
    capped = [_spec(engine, max_tokens=100, temperature=t, seed=s)
              for t, s in ((0.0, None), (1.0, 0))]
    settings.max_number_digits = settings.close_reserve = 0
    uncapped = _spec(engine, max_tokens=40, temperature=0.0)
    outputs = run_all(engine, [(prompt, p) for p in [*capped, uncapped]])
    for text, finish in outputs[:-1]:
        assert finish == "stop", text
        value = json.loads(text)
        jsonschema.validate(value, UNBOUNDED)
        digits = str(value["priority"]).lstrip("-")
        assert len(digits) <= config.StructuredConfig().max_number_digits, text
    # Without the cap Gemma 270M repeats "0" until max_tokens: cut, and said so.
    text, finish = outputs[-1]
    assert finish == "length" and text.count("0") > 20, text
    with pytest.raises(ValueError):
        json.loads(text)


def _allowed(engine, matcher) -> set[int]:
    mask = torch.zeros(mask_words(engine.vocab_size), dtype=torch.int32)
    assert matcher.allowed_tokens(mask)
    bits = ((mask.unsqueeze(-1) >> torch.arange(32, dtype=torch.int32)) & 1).flatten()
    return set(torch.nonzero(bits[:engine.vocab_size]).flatten().tolist())


def test_closing_preference_and_digit_cap_in_the_mask(engine, settings):
    tok = engine.tokenizer
    schema = {"type": "object", "properties": {"note": {"type": "string"}, "n": {
        "type": "number"}}, "required": ["note"], "additionalProperties": False}
    compiled = LLGuidanceCompiler(tok, engine.vocab_size).compile(
        ConstraintSpec("json_schema", schema))
    prefix = tok.encode('{"note": "hello world and', add_special_tokens=False)
    far, near = (compiled.new_constraint(max_tokens=len(prefix) + n) for n in (100, 5))
    for matcher in (far, near):
        for t in prefix:
            assert matcher.accept(t)
    assert len(_allowed(engine, far)) > 1000  # mid-string, budget left: almost anything
    closing = _allowed(engine, near)  # 5 tokens left: only what closes the string
    assert closing and all(set(tok.decode([t])) <= set('"}]') for t in closing), \
        [tok.decode([t]) for t in closing]
    # Digit cap: after 15 digits only tokens that do not start with a digit remain.
    matcher = compiled.new_constraint()
    for t in tok.encode('{"note": "x", "n": 1' + "2" * 14, add_special_tokens=False):
        assert matcher.accept(t)
    allowed = [tok.decode([t]) for t in _allowed(engine, matcher)]
    assert allowed and not any(s[:1].isdigit() for s in allowed), allowed
    assert {".", "}"} <= set(allowed)


def test_string_cap_rewrites_only_unbounded_strings():
    schema = {"type": "object", "properties": {
        "a": {"type": "string"}, "b": {"type": "string", "maxLength": 5},
        "c": {"type": "string", "pattern": "^x+$"}, "d": {"enum": ["p"]},
        "e": {"type": "array", "items": {"type": ["string", "null"]}},
        "f": {"anyOf": [{"type": "string", "format": "date"}, {"type": "string"}]}}}
    capped = cap_strings(schema, 64)
    props = capped["properties"]
    assert props["a"] == {"type": "string", "maxLength": 64}
    assert props["b"]["maxLength"] == 5 and "maxLength" not in props["c"]
    assert props["d"] == {"enum": ["p"]}
    assert props["e"]["items"]["maxLength"] == 64
    assert "maxLength" not in props["f"]["anyOf"][0] and props["f"]["anyOf"][1]["maxLength"] == 64
    assert schema["properties"]["a"] == {"type": "string"}  # the request's schema is untouched
    assert cap_strings(schema, 0) is schema


def test_string_cap_bounds_generation(engine, settings):
    settings.max_string_length = 8
    schema = {"type": "object", "properties": {"story": {"type": "string"}},
              "required": ["story"], "additionalProperties": False}
    p = SamplingParams(max_tokens=60, temperature=0.0,
                       constraint=ConstraintSpec("json_schema", schema))
    [(text, finish)] = run_all(engine, [(_chat(engine, "Tell a long story as JSON."), p)])
    assert finish == "stop" and len(json.loads(text)["story"]) <= 8, text
