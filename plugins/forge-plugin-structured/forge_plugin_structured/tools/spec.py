"""``tools`` / ``tool_choice`` / ``parallel_tool_calls`` of a chat request, validated."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from forge_kernel.engine.types import InvalidRequest

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CHOICES = ("none", "auto", "required")


@dataclass(slots=True)
class FunctionTool:
    """One function the model may call."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object",
                                                                "properties": {}})

    def openai(self) -> dict[str, Any]:
        """The OpenAI ``tools[]`` entry (what chat templates with a tool format read)."""
        return {"type": "function", "function": {"name": self.name,
                                                 "description": self.description,
                                                 "parameters": self.parameters}}


@dataclass(slots=True)
class ToolSetup:
    """What the model may do with tools in this request."""

    tools: list[FunctionTool]
    choice: str
    """``none`` | ``auto`` | ``required`` | ``named``."""
    named: str | None = None
    parallel: bool = False
    """Several calls per reply (``parallel_tool_calls: true``)."""

    @property
    def callable(self) -> list[FunctionTool]:
        """The tools a call may name under this choice."""
        if self.choice == "none":
            return []
        if self.choice == "named":
            return [t for t in self.tools if t.name == self.named]
        return list(self.tools)


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def _tool(index: int, entry: Any) -> FunctionTool:
    param = f"tools[{index}]"
    if not isinstance(entry, dict) or entry.get("type", "function") != "function":
        raise _bad(param, f"{param} must be {{'type': 'function', 'function': {{...}}}}")
    fn = entry.get("function")
    if not isinstance(fn, dict):
        raise _bad(param, f"{param}.function must be an object")
    name = fn.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _bad(param, f"{param}.function.name must match ^[a-zA-Z0-9_-]{{1,64}}$, got "
                          f"{name!r}")
    description = fn.get("description") or ""
    if not isinstance(description, str):
        raise _bad(param, f"{param}.function.description must be a string")
    parameters = fn.get("parameters")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise _bad(param, f"{param}.function.parameters must be a JSON schema object")
    return FunctionTool(name, description, parameters)


def parse_tools(tools: Any, tool_choice: Any, parallel_tool_calls: Any) -> ToolSetup | None:
    """Validate the request's tool fields; ``None`` when the request has no tools."""
    if tools is None or tools == []:
        if tool_choice not in (None, "none"):
            raise _bad("tool_choice", "tool_choice is only allowed when tools are specified")
        return None
    if not isinstance(tools, list):
        raise _bad("tools", "tools must be a list of function tools")
    parsed = [_tool(i, t) for i, t in enumerate(tools)]
    names = [t.name for t in parsed]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise _bad("tools", f"tool names must be unique; {dup!r} appears twice")
    if parallel_tool_calls is not None and not isinstance(parallel_tool_calls, bool):
        raise _bad("parallel_tool_calls", "parallel_tool_calls must be a boolean")
    # Several calls per reply only when asked for: small models that may chain calls repeat
    # the first one until max_tokens (OpenAI's default is true; "may", not "must", call several).
    parallel = bool(parallel_tool_calls)
    if tool_choice is None or tool_choice in CHOICES:
        return ToolSetup(parsed, tool_choice or "auto", None, parallel)
    if isinstance(tool_choice, dict):
        fn = tool_choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if tool_choice.get("type") != "function" or not isinstance(name, str):
            raise _bad("tool_choice", "tool_choice must be 'none', 'auto', 'required' or "
                                      "{'type': 'function', 'function': {'name': ...}}")
        if name not in names:
            raise _bad("tool_choice", f"tool_choice names {name!r}, which is not in tools")
        return ToolSetup(parsed, "named", name, parallel)
    raise _bad("tool_choice", f"tool_choice must be 'none', 'auto', 'required' or a named "
                              f"function, got {tool_choice!r}")
