"""The JSON protocol of ``/v1/ws``: parsing client messages and building server messages.

Client messages are JSON objects with a ``type``:

* ``chat.completion`` / ``completion``: start a generation; ``id`` is chosen by the client and
  every other field is the body of ``POST /v1/chat/completions`` / ``POST /v1/completions``,
  validated by the same models (:mod:`forge_plugin_protocol.protocol`), so the same parameters
  are accepted and the same errors are reported.
* ``cancel``: stop generation ``id``.
* ``ping``: answered by ``pong`` (``data`` is echoed).

Every problem is a :class:`ProtocolError` carrying an OpenAI error object; the connection
stays open. The full description is ``docs/websocket.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from forge_plugin_protocol.errors import error_body, validation_param
from forge_plugin_protocol.protocol import ChatCompletionRequest, CompletionRequest
from pydantic import ValidationError

GENERATE_TYPES = {"chat.completion": ChatCompletionRequest, "completion": CompletionRequest}
CLIENT_TYPES = (*GENERATE_TYPES, "cancel", "ping")
_ENVELOPE = ("type", "id")


class ProtocolError(Exception):
    """A message the server answers with ``{"type": "error", ...}``; ``status`` picks the
    OpenAI error ``type`` exactly as the HTTP API would (400 ``invalid_request_error``...)."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 status: int = 400, id: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.code, self.status, self.id = (
            message, param, code, status, id)

    def to_message(self) -> dict[str, Any]:
        return error(self.id, self.message, self.status, self.param, self.code)


@dataclass(slots=True)
class Generate:
    """Start a generation: ``kind`` is ``chat.completion`` or ``completion``."""

    kind: str
    id: str
    body: ChatCompletionRequest | CompletionRequest


@dataclass(slots=True)
class Cancel:
    id: str


@dataclass(slots=True)
class Ping:
    data: Any = None


ClientMessage = Generate | Cancel | Ping


def parse(raw: str | bytes, max_id_length: int = 128) -> ClientMessage:
    """Parse and validate one client message, or raise :class:`ProtocolError` (with the
    message's ``id`` when it has a usable one, so the client can tell which request failed)."""
    if isinstance(raw, bytes):
        raise ProtocolError("binary messages are not supported: send JSON text messages",
                            code="invalid_message")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ProtocolError(f"We could not parse the JSON message. ({exc})",
                            code="invalid_json") from None
    if not isinstance(data, dict):
        raise ProtocolError("a message must be a JSON object", code="invalid_message")
    kind = data.get("type")
    if kind == "ping":
        return Ping(data.get("data"))
    if kind not in CLIENT_TYPES:
        echo = data.get("id")
        raise ProtocolError(f"unknown message type {kind!r}; expected one of "
                            f"{', '.join(CLIENT_TYPES)}"[:300], param="type",
                            code="invalid_message",
                            id=echo if isinstance(echo, str) and 0 < len(echo) <= max_id_length
                            else None)
    msg_id = _id(data, max_id_length)
    if kind == "cancel":
        return Cancel(msg_id)
    body = {k: v for k, v in data.items() if k not in _ENVELOPE}
    try:
        return Generate(kind, msg_id, GENERATE_TYPES[kind].model_validate(body))
    except ValidationError as exc:
        raise validation_error(exc, msg_id) from None


def _id(data: dict[str, Any], max_length: int) -> str:
    value = data.get("id")
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise ProtocolError(f"id must be a non-empty string of at most {max_length} "
                            f"characters, got {value!r}"[:300], param="id",
                            code="invalid_message")
    return value


def validation_error(exc: ValidationError, msg_id: str | None) -> ProtocolError:
    """The same message/param/code the HTTP API gives for the same bad body."""
    first = exc.errors()[0] if exc.errors() else {}
    param = validation_param(tuple(first.get("loc", ())))
    message = f"{param}: {first.get('msg', 'invalid value')}" if param else \
        first.get("msg", "invalid request")
    return ProtocolError(message, param=param, code="invalid_value", id=msg_id)


# -- server messages ----------------------------------------------------------------------------
def error(msg_id: str | None, message: str, status: int = 400, param: str | None = None,
          code: str | None = None) -> dict[str, Any]:
    """``{"type": "error", "id", "error": {message, type, param, code}}``."""
    return {"type": "error", "id": msg_id, **error_body(message, status, param, code)}


def delta(msg_id: str, index: int, text: str, logprobs: Any = None) -> dict[str, Any]:
    out = {"type": "delta", "id": msg_id, "index": index, "text": text}
    if logprobs is not None:
        out["logprobs"] = logprobs
    return out


def final(kind: str, msg_id: str, finish_reasons: list[str | None], usage: dict[str, Any],
          request_id: str | None = None) -> dict[str, Any]:
    """``done`` or ``cancelled``: the last message of a generation. ``request_id`` is the
    server's id of the generation (the one in its logs)."""
    return {"type": kind, "id": msg_id,
            "finish_reason": finish_reasons[0] if finish_reasons else None,
            "choices": [{"index": i, "finish_reason": r} for i, r in enumerate(finish_reasons)],
            "usage": usage, "request_id": request_id}


def pong(data: Any = None) -> dict[str, Any]:
    return {"type": "pong"} if data is None else {"type": "pong", "data": data}
