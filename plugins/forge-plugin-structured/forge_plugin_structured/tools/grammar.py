"""The tool-call output format and the constraint that enforces it.

A call is written ``<tool_call>\\n{"name": NAME, "arguments": {...}}\\n</tool_call>``; parallel
calls follow each other separated by a newline. The same layout as Hermes/Qwen chat templates,
so models with such a template (and Gemma 3, which has none and is told in the prompt) write
it. ``required`` / named choices constrain the whole reply to calls; ``auto`` leaves the reply
free until the model writes ``<tool_call>``, then constrains the calls (arguments always valid
JSON for the tool's schema).
"""

from __future__ import annotations

import json
from typing import Any

from forge_kernel.interfaces.constraint import ConstraintSpec
from forge_plugin_structured import config, grammars
from forge_plugin_structured.tools.spec import FunctionTool, ToolSetup

OPEN, CLOSE = "<tool_call>", "</tool_call>"


def call_schema(tools: list[FunctionTool]) -> dict[str, Any]:
    """JSON schema of one call's body: one of the tools' ``{"name", "arguments"}`` (arguments
    read strictly: no keys beyond a schema's ``properties`` unless it allows them)."""
    options = [{"type": "object",
                "properties": {"name": {"const": t.name},
                               "arguments": grammars.strict_schema(t.parameters)},
                "required": ["name", "arguments"], "additionalProperties": False}
               for t in tools]
    body: dict[str, Any] = options[0] if len(options) == 1 else {"anyOf": options}
    return {**body, "x-guidance": grammars.style(config.CONFIG.whitespace_flexible)}


def calls_grammar(setup: ToolSetup) -> str:
    """Lark (llguidance dialect) for one call, or one or more when parallel calls are on."""
    start = 'start: call ("\\n" call)*' if setup.parallel else "start: call"
    return (f"{start}\ncall: {grammars.lark_literal(OPEN + chr(10))} body "
            f"{grammars.lark_literal(chr(10) + CLOSE)}\n"
            f"body: %json {json.dumps(call_schema(setup.callable))}\n")


def tool_constraint(setup: ToolSetup) -> ConstraintSpec | None:
    """The constraint of a request with tools (``None`` for ``tool_choice="none"``)."""
    if not setup.callable:
        return None
    grammar = calls_grammar(setup)
    if setup.choice == "auto":
        return ConstraintSpec("grammar", {"grammar": grammar, "trigger": OPEN}, param="tools")
    return ConstraintSpec("grammar", grammar, param="tools")
