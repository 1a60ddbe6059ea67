"""Model output -> content and tool calls, incrementally (streaming) or at once.

Both paths run the same :class:`ToolCallParser`, so a streamed call reassembles to exactly the
arguments a non-streamed request returns. Arguments are the model's own JSON text (valid JSON
when the call was constrained), streamed as it is produced.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field

from forge_plugin_structured.tools.grammar import CLOSE, OPEN

# The head of a call body; the lookahead waits for the arguments' first character, so
# whitespace that is still arriving is not mistaken for the start of the arguments.
_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*(?=\S)')


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str = ""

    def openai(self) -> dict:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(slots=True)
class Delta:
    """One streamed piece: ``content`` text, or a call's start (``name`` set) or arguments."""

    content: str = ""
    index: int | None = None
    call: ToolCall | None = None
    """Set on a call's first delta (id and name)."""
    arguments: str = ""


def _held_prefix(text: str) -> int:
    """Length of the longest suffix of ``text`` that could begin ``OPEN``."""
    for n in range(min(len(OPEN) - 1, len(text)), 0, -1):
        if OPEN.startswith(text[-n:]):
            return n
    return 0


@dataclass(slots=True)
class ToolCallParser:
    """Feed output text; get :class:`Delta` objects back."""

    calls: list[ToolCall] = field(default_factory=list)
    content: str = ""
    _buf: str = ""
    _in_call: bool = False
    _args_at: int | None = None
    _sent: int = 0

    def feed(self, text: str) -> list[Delta]:
        self._buf += text
        out: list[Delta] = []
        while True:
            if not self._in_call:
                at = self._buf.find(OPEN)
                cut = at if at >= 0 else len(self._buf) - _held_prefix(self._buf)
                self._emit_text(self._buf[:cut], out)
                if at < 0:
                    self._buf = self._buf[cut:]
                    return out
                self._buf, self._in_call, self._args_at, self._sent = (
                    self._buf[at + len(OPEN):], True, None, 0)
            end = self._buf.find(CLOSE)
            body = self._buf if end < 0 else self._buf[:end]
            self._call_progress(body, end >= 0, out)
            if end < 0:
                return out
            self._buf, self._in_call = self._buf[end + len(CLOSE):], False

    def finish(self) -> list[Delta]:
        """End of output: flush held text; a call cut short keeps what it had."""
        out: list[Delta] = []
        # After a complete call, a next call cut short before its name (max_tokens) is
        # dropped: it is no call and no content. Before any call it was text.
        if self._in_call and self._args_at is None:
            if not self.calls:
                self._emit_text(OPEN + self._buf, out)
        elif not self._in_call:
            if not (self.calls and OPEN.startswith(self._buf.strip())):
                self._emit_text(self._buf, out)
        elif _complete(self._buf) is not None:
            self._call_progress(_complete(self._buf), True, out)  # cut inside "</tool_call>"
        elif self._buf[self._args_at + self._sent:]:
            rest = self._buf[self._args_at + self._sent:]
            self.calls[-1].arguments += rest
            out.append(Delta(index=len(self.calls) - 1, arguments=rest))
        self._buf, self._in_call = "", False
        return out

    def _emit_text(self, text: str, out: list[Delta]) -> None:
        if not text or (self.calls and not text.strip()):
            return  # newlines between and after calls are layout, not content
        self.content += text
        out.append(Delta(content=text))

    def _call_progress(self, body: str, closed: bool, out: list[Delta]) -> None:
        if self._args_at is None:
            head = _HEAD.match(body)
            if head is None:
                if closed:
                    self._unparsed_call(body, out)
                return
            try:
                name = json.loads(f'"{head.group(1)}"')
            except ValueError:
                name = head.group(1)
            call = ToolCall(f"call_{uuid.uuid4().hex[:24]}", name)
            self.calls.append(call)
            self._args_at = head.end()
            out.append(Delta(index=len(self.calls) - 1, call=call))
        # Everything up to the last "}" may be sent: the body's own closing brace is the last
        # one, and it is held until the call closes.
        stop = body.rfind("}")
        if stop < self._args_at + self._sent:
            return
        piece = body[self._args_at + self._sent:stop]
        if piece:
            self._sent += len(piece)
            self.calls[-1].arguments += piece
            out.append(Delta(index=len(self.calls) - 1, arguments=piece))

    def _unparsed_call(self, body: str, out: list[Delta]) -> None:
        """A closed call whose head is not ``{"name": ..., "arguments": ...}`` (keys in
        another order): parse it whole."""
        try:
            data = json.loads(body)
            name, arguments = data["name"], data.get("arguments", data.get("parameters", {}))
        except (ValueError, KeyError, TypeError):
            self._emit_text(f"{OPEN}{body}{CLOSE}", out)
            return
        call = ToolCall(f"call_{uuid.uuid4().hex[:24]}", str(name), json.dumps(arguments))
        self.calls.append(call)
        out.append(Delta(index=len(self.calls) - 1, call=call))
        out.append(Delta(index=len(self.calls) - 1, arguments=call.arguments))


def _complete(body: str) -> str | None:
    """``body`` without a cut-off ``\n</tool_call>`` when what is left is a whole call body
    (``max_tokens`` ended the reply inside the closing tag), else ``None``."""
    for n in range(len(CLOSE), 0, -1):
        if body.endswith(CLOSE[:n]):
            body = body[:-n]
            break
    body = body.rstrip()
    try:
        json.loads(body)
    except ValueError:
        return None
    return body


def parse_output(text: str) -> tuple[str | None, list[ToolCall]]:
    """``(content or None, calls)`` of a whole reply."""
    parser = ToolCallParser()
    parser.feed(text)
    parser.finish()
    content = parser.content.strip() if parser.calls else parser.content
    return (content or None) if parser.calls else content, parser.calls
