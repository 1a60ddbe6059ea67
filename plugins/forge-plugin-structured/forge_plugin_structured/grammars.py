"""Request constraints -> llguidance grammar text (validated), with the errors clients see.

Every kind ends up as one llguidance grammar string: JSON schemas through llguidance's JSON
compiler, regexes through its regex compiler, choices as a Lark alternation of literals, and
grammars as Lark (llguidance's dialect, which embeds ``%json {schema}``) or GBNF (converted).
"""

from __future__ import annotations

import json
from typing import Any

import llguidance
from llguidance.gbnf_to_lark import GbnfToLarkError, gbnf_to_lark

from forge_kernel.engine.types import InvalidRequest

JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
"""The fixed JSON style (``json.dumps``'s): one way to write each value, so a small model
cannot wander into endless whitespace."""
FLEXIBLE_STYLE = {"whitespace_flexible": True}


def _unsupported(param: str, what: str, messages: list[str]) -> InvalidRequest:
    detail = "; ".join(m.strip() for m in messages) or "rejected by the grammar compiler"
    if what == "JSON schema feature":
        return InvalidRequest(f"{param}: unsupported JSON schema feature: {detail}",
                              param=param, code="unsupported_schema")
    return InvalidRequest(f"{param}: invalid {what}: {detail}", param=param,
                          code="invalid_grammar")


def checked(grammar: str, param: str, what: str) -> str:
    """``grammar`` if llguidance accepts it; else a 400 naming what it refused (unsupported
    JSON-schema keywords are listed: ``Unimplemented keys: ["uniqueItems"]``)."""
    try:
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    except (ValueError, RuntimeError) as exc:
        raise _unsupported(param, what, [str(exc)]) from None
    if is_error:
        raise _unsupported(param, what, list(messages))
    return grammar


def style(flexible: bool) -> dict[str, Any]:
    return dict(FLEXIBLE_STYLE if flexible else JSON_STYLE)


_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")


def strict_schema(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object schema that lists
    ``properties`` and says nothing about extra keys (OpenAI's ``strict`` reading, and what
    tool arguments get): a small model otherwise keeps inventing keys until ``max_tokens``."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out and "additionalProperties" not in out \
            and "patternProperties" not in out:
        out["additionalProperties"] = False
    for key in _SUBSCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {k: strict_schema(v) for k, v in out[key].items()}
    for key in _SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [strict_schema(v) for v in out[key]]
    for key in ("items", "additionalProperties", "not", "if", "then", "else"):
        if isinstance(out.get(key), dict):
            out[key] = strict_schema(out[key])
    return out


def json_schema_grammar(schema: Any, param: str, flexible: bool) -> str:
    """A grammar for JSON documents valid against ``schema`` (a dict, or ``True``)."""
    if not isinstance(schema, (dict, bool)):
        raise InvalidRequest(f"{param}: the JSON schema must be an object, got "
                             f"{type(schema).__name__}", param=param)
    try:
        text = json.dumps(schema)
        grammar = llguidance.LLMatcher.grammar_from_json_schema(text, defaults=style(flexible))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise _unsupported(param, "JSON schema feature", [str(exc)]) from None
    return checked(grammar, param, "JSON schema feature")


def regex_grammar(pattern: Any, param: str) -> str:
    if not isinstance(pattern, str) or not pattern:
        raise InvalidRequest(f"{param} must be a non-empty regular expression string",
                             param=param)
    try:
        grammar = llguidance.LLMatcher.grammar_from_regex(pattern)
    except (ValueError, RuntimeError) as exc:
        raise InvalidRequest(f"{param}: invalid regular expression: {exc}", param=param,
                             code="invalid_grammar") from None
    return checked(grammar, param, "regular expression")


def lark_literal(text: str) -> str:
    """``text`` as a Lark string literal (JSON escapes, which llguidance's Lark reads)."""
    return json.dumps(text, ensure_ascii=False)


def choice_grammar(choices: Any, param: str) -> str:
    if (not isinstance(choices, list) or not choices
            or any(not isinstance(c, str) or not c for c in choices)):
        raise InvalidRequest(f"{param} must be a non-empty list of non-empty strings",
                             param=param)
    lark = "start: " + " | ".join(lark_literal(c) for c in dict.fromkeys(choices)) + "\n"
    return checked(llguidance.LLMatcher.grammar_from_lark(lark), param, "choice")


def text_grammar(source: Any, param: str) -> str:
    """A Lark grammar (llguidance's dialect: ``start`` rule, ``%json {...}`` allowed) or a
    GBNF grammar (``root ::= ...``, as llama.cpp takes), converted to Lark."""
    if not isinstance(source, str) or not source.strip():
        raise InvalidRequest(f"{param} must be a non-empty grammar string", param=param)
    try:
        lark = gbnf_to_lark(source) if "::=" in source else source
        grammar = llguidance.LLMatcher.grammar_from_lark(lark)
    except (ValueError, RuntimeError, GbnfToLarkError) as exc:
        raise InvalidRequest(f"{param}: invalid grammar: {exc}", param=param,
                             code="invalid_grammar") from None
    return checked(grammar, param, "grammar")
