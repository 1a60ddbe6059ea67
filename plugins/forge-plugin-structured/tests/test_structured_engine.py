"""Constrained generation on the default model (Gemma 3 270M, 262k vocabulary) through the real
engine: JSON schemas (greedy and sampled) validate with jsonschema, regex/choice/grammar
outputs match, constrained and free requests share steps, unsupported schema features and
bad grammars are InvalidRequest naming the parameter, compilation is cached, and the lazy
tool-call constraint enforces the call once ``<tool_call>`` appears."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from engine_run import run_all
from forge_plugin_structured.compiler import LLGuidanceCompiler
from forge_plugin_structured.tools.grammar import tool_constraint
from forge_plugin_structured.tools.parser import parse_output
from forge_plugin_structured.tools.spec import parse_tools

from forge_kernel.engine.types import InvalidRequest, SamplingParams
from forge_kernel.interfaces.constraint import ConstraintSpec

SCHEMAS = [
    {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 30}, "age": {"type": "integer", "minimum": 0,
                                                             "maximum": 120},
        "pets": {"type": "array", "items": {"enum": ["cat", "dog", "fish"]}, "maxItems": 3}},
     "required": ["name", "age", "pets"], "additionalProperties": False},
    {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 30},
        "location": {"type": "object", "properties": {"lat": {"type": "number"},
                                                      "lon": {"type": "number"}},
                     "required": ["lat", "lon"], "additionalProperties": False},
        "capital": {"type": "boolean"}},
     "required": ["city", "location", "capital"], "additionalProperties": False},
]


def _chat(engine, text: str) -> list[int]:
    tok = engine.tokenizer
    return tok.encode(tok.apply_chat_template([{"role": "user", "content": text}]),
                      add_special_tokens=False)


@pytest.mark.parametrize("schema", SCHEMAS, ids=["person", "city"])
def test_json_schema_outputs_validate(engine, schema):
    prompt = _chat(engine, "Give an example as JSON.")
    requests = [SamplingParams(max_tokens=120, temperature=t, seed=s,
                               constraint=ConstraintSpec("json_schema", schema))
                for t, s in ((0.0, None), (1.0, 1), (1.0, 2))]
    free = SamplingParams(max_tokens=8, temperature=0.0)  # shares the steps, unconstrained
    outputs = run_all(engine, [(prompt, p) for p in requests] + [(prompt, free)])
    for text, finish in outputs[:-1]:
        assert finish == "stop", text
        jsonschema.validate(json.loads(text), schema)
    assert outputs[-1][1] == "length"


def test_regex_choice_grammar_and_json_object(engine):
    prompt = _chat(engine, "Answer.")
    specs = [ConstraintSpec("regex", r"[0-9]{3}-[0-9]{4}", param="guided_regex"),
             ConstraintSpec("choice", ["yes", "no", "maybe \"so\""], param="guided_choice"),
             ConstraintSpec("grammar", 'root ::= "color: " ("red" | "green" | "blue")',
                            param="guided_grammar"),
             ConstraintSpec("json_object")]
    outputs = run_all(engine, [(prompt, SamplingParams(max_tokens=60, temperature=0.0,
                                                       constraint=s)) for s in specs])
    assert re.fullmatch(r"[0-9]{3}-[0-9]{4}", outputs[0][0])
    assert outputs[1][0] in ("yes", "no", 'maybe "so"')
    assert re.fullmatch(r"color: (red|green|blue)", outputs[2][0])
    assert isinstance(json.loads(outputs[3][0]), dict)


@pytest.mark.parametrize(("spec", "needle"), [
    (ConstraintSpec("json_schema", {"type": "array", "uniqueItems": True}), "uniqueItems"),
    (ConstraintSpec("json_schema", {"type": "object", "if": {}, "then": {}}), "if"),
    (ConstraintSpec("json_schema", {"type": "strin"}), "strin"),
    (ConstraintSpec("regex", "(", param="guided_regex"), "regular expression"),
    (ConstraintSpec("grammar", "start: undefined_rule", param="guided_grammar"), "undefined"),
    (ConstraintSpec("choice", [], param="guided_choice"), "non-empty"),
])
def test_bad_constraints_are_invalid_requests(engine, spec, needle):
    with pytest.raises(InvalidRequest) as info:
        engine.validate([2, 100], SamplingParams(max_tokens=4, constraint=spec))
    assert info.value.param == spec.param and needle in info.value.message


def test_ignore_eos_with_a_constraint_is_refused(engine):
    with pytest.raises(InvalidRequest) as info:
        engine.validate([2, 100], SamplingParams(max_tokens=4, ignore_eos=True,
                                                 constraint=ConstraintSpec("json_object")))
    assert info.value.param == "ignore_eos"


def test_compilation_is_cached(engine):
    compiler = LLGuidanceCompiler(engine.tokenizer, engine.vocab_size)  # shares the vocab
    spec = {"type": "object", "properties": {"x": {"type": "integer"}}}
    first = compiler.compile(ConstraintSpec("json_schema", spec))
    again = compiler.compile(ConstraintSpec("json_schema", json.loads(json.dumps(spec))))
    assert first is again and (compiler.hits, compiler.misses) == (1, 1)


def test_both_end_tokens_end_a_finished_constraint(engine):
    compiled = LLGuidanceCompiler(engine.tokenizer, engine.vocab_size).compile(
        ConstraintSpec("choice", ["ok"]))
    import torch

    from forge_kernel.interfaces.constraint import mask_words
    matcher = compiled.new_constraint()
    for t in engine.tokenizer.encode("ok", add_special_tokens=False):
        assert matcher.accept(t)
    mask = torch.zeros(mask_words(engine.vocab_size), dtype=torch.int32)
    matcher.allowed_tokens(mask)
    allowed = [t for t in range(engine.vocab_size) if (int(mask[t // 32]) >> (t % 32)) & 1]
    assert set(allowed) == set(engine.tokenizer.eos_ids)  # <eos> and <end_of_turn>


def test_lazy_tool_constraint_enforces_the_call_once_started(engine):
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    spec = tool_constraint(parse_tools([weather], "auto", False))
    compiler = LLGuidanceCompiler(engine.tokenizer, engine.vocab_size)
    matcher = compiler.compile(spec).new_constraint()
    import torch

    from forge_kernel.interfaces.constraint import mask_words
    mask = torch.zeros(mask_words(engine.vocab_size), dtype=torch.int32)
    tok = engine.tokenizer
    for t in tok.encode("Sure, let me look. ", add_special_tokens=False):
        assert matcher.allowed_tokens(mask) is False  # free text until the trigger
        matcher.accept(t)
    for t in tok.encode("<tool_call>\n", add_special_tokens=False):
        matcher.accept(t)
    assert matcher.allowed_tokens(mask) is True
    allowed = {t for t in range(engine.vocab_size) if (int(mask[t // 32]) >> (t % 32)) & 1}
    assert allowed and all(tok.decode([t]).startswith("{") for t in allowed)  # the JSON body
    assert tok.encode("Hello", add_special_tokens=False)[0] not in allowed
    # Forced (required): the whole reply is a call matching the tool's schema.
    short = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 24}},
        "required": ["city"]}}}
    forced = tool_constraint(parse_tools([short], "required", False))
    prompt = tok.encode(tok.apply_chat_template([{"role": "user", "content": "Weather in Paris?"}]),
                        add_special_tokens=False)
    [(text, finish)] = run_all(engine, [(prompt, SamplingParams(max_tokens=60, temperature=0.0,
                                                                constraint=forced))])
    content, calls = parse_output(text)
    assert finish == "stop" and content is None and calls[0].name == "get_weather", text
    assert isinstance(json.loads(calls[0].arguments)["city"], str)
