"""Tool calling fields of a chat request: ``tools``, ``tool_choice``, ``parallel_tool_calls``,
tool turns in ``messages`` and forge's server-side tools (``forge_tools``).

The work itself (validation, the prompt format, the call grammar, reply parsing) is
forge-plugin-structured's (:mod:`forge_plugin_structured.chat`), an optional dependency (the
``structured`` extra): without it a request that uses tools is a 400 ``unsupported_parameter``
naming the field, and nothing is imported for requests without tools.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from forge_kernel.engine.types import InvalidRequest

if TYPE_CHECKING:
    from forge_plugin_protocol.protocol import ChatCompletionRequest

_TOOLS: dict[tuple[int, str], Any] = {}
"""Server-side tool instances, per registry and name: built once (the retrieval tool loads its
configuration; its embedding model loads on the first call)."""


def _structured(param: str) -> Any:
    try:
        from forge_plugin_structured import chat
    except ImportError:
        raise InvalidRequest(f"{param}: tool calling needs forge-plugin-structured (pip install "
                             f"forge-plugin-structured)", param=param,
                             code="unsupported_parameter") from None
    return chat


def uses_tools(body: ChatCompletionRequest) -> str | None:
    """The first tool field the request uses (``None``: a request without tools)."""
    if body.tools:
        return "tools"
    if body.forge_tools:
        return "forge_tools"
    if body.tool_choice not in (None, "none"):
        return "tool_choice"
    for i, m in enumerate(body.messages):
        extra = m.model_extra or {}
        if m.role == "tool" or extra.get("tool_calls"):
            return f"messages[{i}]"
    return None


def server_tool(server: Any, name: Any) -> Any:
    """The registered :class:`~forge_kernel.interfaces.tool.Tool` ``name`` (one instance per
    server); an unknown name is a 400 on ``forge_tools`` listing the installed ones."""
    registry = getattr(server, "registry", None)
    names = registry.names("tool") if registry is not None else []
    if not isinstance(name, str) or name not in names:
        raise InvalidRequest(f"forge_tools: no server-side tool named {name!r} (installed: "
                             f"{', '.join(names) or 'none'})", param="forge_tools",
                             code="invalid_value")
    key = (id(registry), name)
    if key not in _TOOLS:
        _TOOLS[key] = registry.create("tool", name)
    return _TOOLS[key]


def server_tools(server: Any, body: ChatCompletionRequest) -> dict[str, Any]:
    """``forge_tools`` resolved: name -> tool instance (checked against the client's tools)."""
    if not body.forge_tools:
        return {}
    if len(set(body.forge_tools)) != len(body.forge_tools):
        raise InvalidRequest("forge_tools: each tool may be named once", param="forge_tools")
    clients = {t.get("function", {}).get("name") for t in body.tools or []
               if isinstance(t, dict) and isinstance(t.get("function"), dict)}
    clash = sorted(clients & set(body.forge_tools))
    if clash:
        raise InvalidRequest(f"forge_tools: {clash[0]!r} is also a client tool in tools",
                             param="forge_tools")
    return {name: server_tool(server, name) for name in body.forge_tools}


def tool_setup(body: ChatCompletionRequest, server: Any = None) -> Any:
    """The request's validated ``ToolSetup`` (``None`` without tools): the client's ``tools``
    plus the server-side ``forge_tools`` as OpenAI function entries. Also validates tool turns
    in ``messages`` (a tool message without ``tool_call_id``, history calls whose arguments
    are not JSON are 400s naming the message)."""
    used = uses_tools(body)
    if used is None:
        return None
    chat = _structured(used)
    chat.check_messages([m.model_dump(exclude_none=True) for m in body.messages])
    entries = list(body.tools or [])
    for tool in server_tools(server, body).values():
        entries.append({"type": "function", "function": {
            "name": tool.name, "description": getattr(tool, "description", ""),
            "parameters": getattr(tool, "parameters", None)}})
    return chat.tool_setup(entries or None, body.tool_choice, body.parallel_tool_calls)


def render(tokenizer: Any, messages: list[dict[str, Any]], setup: Any,
           add_generation_prompt: bool) -> str:
    """The prompt of a request with tools or tool turns (the structured plugin's format)."""
    return _structured("tools").render(tokenizer, messages, setup, add_generation_prompt)


def constraint(setup: Any, response_format: Any, guided: dict[str, Any]) -> Any:
    """The tool-call constraint, or what ``response_format`` / ``guided_*`` ask for."""
    return _structured("tools").constraint(setup, response_format, **guided)
