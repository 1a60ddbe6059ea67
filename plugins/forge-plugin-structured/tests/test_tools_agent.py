"""The server-side agent loop without a model: a scripted ``generate`` stands in for the
engine (the real model runs it in forge-plugin-openai's tests/test_openai_tools.py)."""

from __future__ import annotations

import asyncio
import json

from forge_plugin_structured.chat import tool_setup
from forge_plugin_structured.tools.agent import run_agent

from forge_kernel.interfaces.tool import Tool


class Lookup(Tool):
    name = "lookup"
    description = "Look a word up"
    parameters = {"type": "object", "properties": {"word": {"type": "string"}}}

    def __call__(self, **arguments) -> str:
        if arguments["word"] == "boom":
            raise ValueError("no such word")
        return arguments["word"].upper()


LOOKUP = {"type": "function", "function": {"name": "lookup", "parameters": Lookup.parameters}}
CLIENT = {"type": "function", "function": {"name": "ask_user", "parameters": {
    "type": "object", "properties": {}}}}


def call(name: str, arguments: str) -> str:
    return f'<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>'


class Script:
    """Replies in order; records what each round saw."""

    def __init__(self, *replies: tuple[str, str]) -> None:
        self.replies, self.seen = list(replies), []

    async def __call__(self, messages, tool_choice):
        self.seen.append((list(messages), tool_choice))
        text, finish = self.replies.pop(0)
        return text, finish, tool_setup([LOOKUP, CLIENT], tool_choice, None)


def run(script: Script, rounds: int = 3, choice="required"):
    return asyncio.run(run_agent([{"role": "user", "content": "hi"}], choice,
                                 {"lookup": Lookup()}, script, rounds))


def test_calls_are_run_and_fed_back_until_an_answer():
    script = Script((call("lookup", '{"word": "fish"}'), "stop"), ("It is FISH.", "stop"))
    result = run(script)
    assert result.message == {"role": "assistant", "content": "It is FISH."}
    assert result.finish_reason == "stop" and result.rounds == 2
    [ran] = result.calls
    assert (ran.round, ran.name, ran.output, ran.is_error) == (0, "lookup", "FISH", False)
    second, choice = script.seen[1]
    assert choice == "auto" and script.seen[0][1] == "required"
    assert second[1]["role"] == "assistant" and second[1]["tool_calls"][0]["id"] == ran.id
    assert second[2] == {"role": "tool", "tool_call_id": ran.id, "content": "FISH"}
    assert ran.openai()["function"] == {"name": "lookup", "arguments": '{"word": "fish"}'}


def test_tool_errors_and_cut_arguments_go_back_to_the_model():
    script = Script((call("lookup", '{"word": "boom"}'), "stop"),
                    ('<tool_call>\n{"name": "lookup", "arguments": {"word": "fi', "length"),
                    ("done", "stop"))
    result = run(script)
    assert [c.is_error for c in result.calls] == [True, True]
    assert result.calls[0].output == "error: no such word"
    assert "not a valid JSON object" in result.calls[1].output
    replayed = script.seen[2][0][3]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(replayed) == {}  # the history holds only valid JSON


def test_a_client_tool_call_ends_the_loop():
    both = call("lookup", '{"word": "a"}') + "\n" + call("ask_user", "{}")
    script = Script((both, "stop"))
    result = asyncio.run(run_agent([{"role": "user", "content": "hi"}], "auto",
                                   {"lookup": Lookup()}, script, 3))
    assert result.finish_reason == "tool_calls" and result.rounds == 1
    assert [c["function"]["name"] for c in result.message["tool_calls"]] == ["ask_user"]
    assert [c.name for c in result.calls] == ["lookup"]


def test_the_last_round_runs_without_tools():
    again = (call("lookup", '{"word": "x"}'), "stop")
    script = Script(again, again, ("answer", "length"))
    result = run(script, rounds=2)
    assert [choice for _, choice in script.seen] == ["required", "auto", "none"]
    assert result.rounds == 3 and len(result.calls) == 2
    assert result.message["content"] == "answer" and result.finish_reason == "length"
