"""Request fields -> :class:`ConstraintSpec`: what the OpenAI/WebSocket protocol calls.

``response_format`` (OpenAI: ``text`` | ``json_object`` | ``json_schema``) and the vLLM-style
extras ``guided_json`` / ``guided_regex`` / ``guided_choice`` / ``guided_grammar``; at most
one of them per request.
"""

from __future__ import annotations

from typing import Any

from forge_kernel.engine.types import InvalidRequest
from forge_kernel.interfaces.constraint import ConstraintSpec
from forge_plugin_structured.grammars import strict_schema

GUIDED = {"guided_json": "json_schema", "guided_regex": "regex", "guided_choice": "choice",
          "guided_grammar": "grammar"}


def _response_format(value: Any) -> ConstraintSpec | None:
    param = "response_format"
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise InvalidRequest("response_format must be an object with a type", param=param)
    kind = value["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return ConstraintSpec("json_object", None, param=param)
    if kind != "json_schema":
        raise InvalidRequest(f"response_format.type must be 'text', 'json_object' or "
                             f"'json_schema', got {kind!r}", param=param)
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
        raise InvalidRequest("response_format.json_schema must be an object with a 'schema' "
                             "object", param=param)
    schema = spec.get("schema", {})
    return ConstraintSpec("json_schema", strict_schema(schema) if spec.get("strict") else schema,
                          param=param)


def request_constraint(response_format: Any = None, **guided: Any) -> ConstraintSpec | None:
    """The constraint a request asks for (``None``: free output). ``guided`` takes the
    ``guided_*`` fields; ``None`` values are ignored. Raises ``InvalidRequest``."""
    given = {k: v for k, v in guided.items() if v is not None}
    unknown = set(given) - set(GUIDED)
    if unknown:
        raise InvalidRequest(f"unknown guided field {sorted(unknown)[0]!r}",
                             param=sorted(unknown)[0])
    spec = _response_format(response_format) if response_format is not None else None
    asked = ([spec.param] if spec else []) + sorted(given)
    if len(asked) > 1:
        raise InvalidRequest(f"only one of response_format and guided_* may be given, got "
                             f"{', '.join(asked)}", param=asked[1])
    if given:
        [(field, value)] = given.items()
        return ConstraintSpec(GUIDED[field], value, param=field)
    return spec
