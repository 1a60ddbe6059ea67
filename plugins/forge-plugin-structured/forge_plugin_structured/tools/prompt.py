"""Messages with tools -> what the chat template renders.

A template with its own tool format (it reads a ``tools`` variable, as Qwen's and Hermes'
do) gets the tools and the messages as they are. Otherwise (Gemma 3's template has none) the
documented forge format is used: a system preamble lists the tools as JSON and shows the call
layout of :mod:`.grammar`; earlier assistant calls are written back in that layout; ``tool``
messages become user turns ``<tool_response>...</tool_response>``; consecutive turns of one
role are merged, since such templates require user/assistant alternation.
"""

from __future__ import annotations

import json
from typing import Any

from forge_plugin_structured.tools.grammar import CLOSE, OPEN
from forge_plugin_structured.tools.history import call_arguments, check_messages
from forge_plugin_structured.tools.spec import ToolSetup

PREAMBLE = """You can call these tools (JSON schemas of their arguments):
{tools}

To call a tool, reply with only:
{open}
{{"name": "<tool name>", "arguments": {{<arguments as JSON>}}}}
{close}
{parallel}Tool results come back as <tool_response> blocks. {when}"""


def template_has_tools(template: str | None) -> bool:
    """Whether a chat template renders tools itself."""
    return bool(template) and "tools" in template


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and p.get("type") == "text")
    return content or ""


def call_text(name: str, arguments: Any) -> str:
    """One call in the forge layout."""
    return f"{OPEN}\n{json.dumps({'name': name, 'arguments': arguments})}\n{CLOSE}"


def _calls(index: int, calls: list[Any]) -> list[str]:
    return [call_text(*call_arguments(index, call)) for call in calls]


def forge_messages(messages: list[dict[str, Any]], setup: ToolSetup | None
                   ) -> list[dict[str, Any]]:
    """``messages`` rewritten into plain system/user/assistant turns (the forge format);
    malformed tool turns raise ``InvalidRequest`` (:func:`.history.check_messages`)."""
    check_messages(messages)
    out: list[dict[str, Any]] = []

    def add(role: str, text: str) -> None:
        if out and out[-1]["role"] == role and role != "system":
            out[-1]["content"] += "\n\n" + text
        else:
            out.append({"role": role, "content": text})

    for i, m in enumerate(messages):
        role = "system" if m.get("role") == "developer" else m.get("role")
        if role == "tool":
            add("user", f"<tool_response>\n{_text(m.get('content'))}\n</tool_response>")
        elif role == "assistant" and m.get("tool_calls"):
            text = _text(m.get("content")).strip()
            add("assistant", "\n".join(([text] if text else []) + _calls(i, m["tool_calls"])))
        else:
            add(role, _text(m.get("content")))
    if setup is not None and setup.callable:
        listing = "\n".join(json.dumps({"name": t.name, "description": t.description,
                                        "parameters": t.parameters}) for t in setup.callable)
        when = {"auto": "Call a tool only when it helps; otherwise answer normally.",
                "required": "You must call a tool now.",
                "named": f"You must call {setup.named} now."}[setup.choice]
        parallel = "Several calls may follow each other, one per line.\n" if setup.parallel \
            else "Call one tool at a time.\n"
        preamble = PREAMBLE.format(tools=listing, open=OPEN, close=CLOSE, parallel=parallel,
                                   when=when)
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content']}\n\n{preamble}"
        else:
            out.insert(0, {"role": "system", "content": preamble})
    return out


def render(tokenizer: Any, messages: list[dict[str, Any]], setup: ToolSetup | None,
           add_generation_prompt: bool = True) -> str:
    """The prompt text for a chat request with tools (or with tool messages in its history)."""
    from_template = getattr(tokenizer, "chat_template", None)
    if template_has_tools(from_template):
        check_messages(messages)
        tools = [t.openai() for t in setup.callable] if setup is not None else None
        return tokenizer.apply_chat_template(_template_messages(messages),
                                             add_generation_prompt=add_generation_prompt,
                                             tools=tools or None)
    return tokenizer.apply_chat_template(forge_messages(messages, setup),
                                         add_generation_prompt=add_generation_prompt)


def _template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History calls with ``arguments`` as objects: what HF chat templates with a tool format
    expect (they write ``arguments | tojson``; OpenAI clients send JSON text)."""
    out = []
    for i, m in enumerate(messages):
        if m.get("tool_calls"):
            calls = []
            for call in m["tool_calls"]:
                name, arguments = call_arguments(i, call)
                calls.append({**call, "function": {"name": name, "arguments": arguments}})
            m = {**m, "tool_calls": calls}
        out.append(m)
    return out
