"""Server-side tools: the agent loop that runs the model's calls to tools registered through
``forge_register_tools`` and feeds the results back until the model answers.

Round ``r`` generates a reply (through a ``generate`` callback, so this module knows nothing of
HTTP or the engine). Calls to server tools are run (in a worker thread: tools such as
``rag_search`` block), appended to the conversation as an assistant ``tool_calls`` message and
``role: "tool"`` results, and the model is asked again. The loop ends when a reply has no
calls, when it calls a client tool (that round's client calls go back to the client as
``tool_calls``; its server calls are run and reported), or after ``max_rounds`` rounds of
calls: the next generation then runs with ``tool_choice="none"``, so the reply is an answer.
The first round uses the request's ``tool_choice``; later rounds ``auto`` (a ``required``
choice would otherwise never let the model answer).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from forge_plugin_structured.chat import reply_message

log = logging.getLogger("forge.structured.agent")

Generate = Callable[[list[dict[str, Any]], Any], Awaitable[tuple[str, str | None, Any]]]
"""``generate(messages, tool_choice) -> (text, finish_reason, tool_setup)`` of one round."""


@dataclass(slots=True)
class ServerCall:
    """One call the server ran for the model."""

    round: int
    id: str
    name: str
    arguments: str
    output: str
    is_error: bool = False

    def openai(self) -> dict[str, Any]:
        """The entry of the response's ``forge_tool_calls`` list."""
        return {"round": self.round, "id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments},
                "output": self.output, "is_error": self.is_error}


@dataclass(slots=True)
class AgentResult:
    message: dict[str, Any]
    """The final ``choices[0].message``."""
    finish_reason: str | None
    calls: list[ServerCall] = field(default_factory=list)
    rounds: int = 0
    """Generations run."""


async def run_tool(tool: Any, arguments: str) -> tuple[str, bool]:
    """``(output, is_error)``: a tool's failure goes back to the model as text (it may retry
    or answer without it) instead of failing the request."""
    try:
        value = json.loads(arguments or "{}")
        if not isinstance(value, dict):
            raise ValueError("arguments must be a JSON object")
    except ValueError as exc:
        return (f"error: the arguments are not a valid JSON object ({exc}; the call was "
                f"probably cut short by max_tokens): {arguments}"), True
    try:
        return str(await asyncio.to_thread(tool, **value)), False
    except Exception as exc:  # noqa: BLE001 - any tool failure is reported to the model
        log.warning("server tool %s failed: %r", getattr(tool, "name", tool), exc)
        return f"error: {exc}", True


async def run_agent(messages: list[dict[str, Any]], tool_choice: Any,
                    server_tools: dict[str, Any], generate: Generate,
                    max_rounds: int) -> AgentResult:
    """Run the loop described in the module docstring from the request's ``messages``."""
    history = list(messages)
    trace: list[ServerCall] = []
    choice = tool_choice
    for round_no in range(max_rounds + 1):
        if round_no == max_rounds:
            choice = "none"
        text, finish, setup = await generate(history, choice)
        message, finish = reply_message(text, finish, setup)
        calls = message.get("tool_calls") or []
        if not calls:
            return AgentResult(message, finish, trace, round_no + 1)
        ran: list[ServerCall] = []
        for call in calls:
            fn = call["function"]
            tool = server_tools.get(fn["name"])
            if tool is not None:
                output, failed = await run_tool(tool, fn["arguments"])
                ran.append(ServerCall(round_no, call["id"], fn["name"], fn["arguments"],
                                      output, failed))
        trace += ran
        client_calls = [c for c in calls if c["function"]["name"] not in server_tools]
        if client_calls:
            return AgentResult({**message, "tool_calls": client_calls}, finish, trace,
                               round_no + 1)
        history.append({"role": "assistant", "content": message.get("content"),
                        "tool_calls": [_replayable(c) for c in calls]})
        history += [{"role": "tool", "tool_call_id": c.id, "content": c.output} for c in ran]
        choice = "auto"
    raise AssertionError("unreachable: the last round runs with tool_choice='none'")


def _replayable(call: dict[str, Any]) -> dict[str, Any]:
    """``call`` as the next round's history holds it: arguments cut short (``max_tokens``) are
    not JSON, which a history may not hold; they become ``{}`` (the tool's answer, an error
    message quoting them, follows)."""
    try:
        json.loads(call["function"]["arguments"])
        return call
    except ValueError:
        return {**call, "function": {**call["function"], "arguments": "{}"}}
