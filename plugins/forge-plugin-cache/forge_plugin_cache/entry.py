"""One cached response: what is stored, its byte format, and the checks on what may be stored.

Stored form: one JSON header line (status, headers, stream flag, time stored) then the raw
response body, exactly as the endpoint sent it (the SSE text for a stream), so a replay is the
original bytes plus the ``usage.cached`` marker.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

FORMAT = 1
_KEPT_HEADERS = frozenset({"content-type", "x-request-id", "openai-model"})
_CACHEABLE_FINISH = frozenset({"stop", "length"})


@dataclass(slots=True)
class CachedResponse:
    """A complete, successful response of a completion endpoint."""

    body: bytes
    stream: bool
    headers: list[tuple[str, str]] = field(default_factory=list)
    status: int = 200
    stored_at: float = field(default_factory=time.time)

    def encode(self) -> bytes:
        head = {"f": FORMAT, "status": self.status, "headers": self.headers,
                "stream": self.stream, "stored_at": self.stored_at}
        return json.dumps(head, separators=(",", ":")).encode() + b"\n" + self.body

    @classmethod
    def decode(cls, data: bytes) -> CachedResponse:
        """Parse :meth:`encode`'s bytes; ``ValueError`` if they are not such bytes."""
        head_bytes, sep, body = data.partition(b"\n")
        try:
            head = json.loads(head_bytes) if sep else None
        except json.JSONDecodeError:
            head = None
        if not isinstance(head, dict) or head.get("f") != FORMAT:
            raise ValueError("not a cache entry of this format")
        return cls(body=body, stream=bool(head["stream"]),
                   headers=[(str(k), str(v)) for k, v in head["headers"]],
                   status=int(head["status"]), stored_at=float(head["stored_at"]))

    def expired(self, ttl_seconds: float, now: float | None = None) -> bool:
        return ttl_seconds > 0 and (now or time.time()) - self.stored_at > ttl_seconds


def kept_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """Response headers worth replaying (not length, date, server or hop-by-hop ones)."""
    return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw
            if k.decode("latin-1").lower() in _KEPT_HEADERS]


def sse_events(body: bytes) -> list[Any]:
    """The ``data:`` payloads of an SSE body, JSON-decoded (``"[DONE]"`` stays a string)."""
    events = []
    for block in body.split(b"\n\n"):
        block = block.strip()
        if not block.startswith(b"data:"):
            continue
        payload = block[5:].strip()
        if payload == b"[DONE]":
            events.append("[DONE]")
            continue
        try:
            events.append(json.loads(payload))
        except json.JSONDecodeError:
            events.append(None)
    return events


def complete(body: bytes, stream: bool) -> bool:
    """Whether a 200 body is a whole, successful answer worth storing: every choice finished
    with ``stop`` or ``length`` (not ``abort`` on shutdown or a disconnect), no error event,
    and for a stream the closing ``[DONE]``."""
    if stream:
        events = sse_events(body)
        if not events or events[-1] != "[DONE]":
            return False
        chunks = events[:-1]
        if any(not isinstance(c, dict) or "error" in c for c in chunks):
            return False
    else:
        try:
            chunks = [json.loads(body)]
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
        if not isinstance(chunks[0], dict) or "error" in chunks[0]:
            return False
    finished: dict[Any, str] = {}
    seen: set[Any] = set()
    for chunk in chunks:
        for choice in chunk.get("choices") or []:
            seen.add(choice.get("index"))
            if choice.get("finish_reason") is not None:
                finished[choice.get("index")] = choice["finish_reason"]
    return bool(seen) and seen == set(finished) and set(finished.values()) <= _CACHEABLE_FINISH


def mark_cached(body: bytes, stream: bool) -> bytes:
    """The body with ``"cached": true`` added to its ``usage`` (the stream's usage chunk, if
    the client asked for one): a replay generated no new tokens; the counts describe the stored
    answer. Serialized like the OpenAI plugin does (compact JSON for a body, ``json.dumps``
    defaults for SSE chunks)."""
    if not stream:
        data = json.loads(body)
        if isinstance(data.get("usage"), dict):
            data["usage"]["cached"] = True
        return json.dumps(data, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode()
    blocks = body.split(b"\n\n")
    for i, block in enumerate(blocks):
        if b'"usage"' not in block or not block.startswith(b"data: {"):
            continue
        data = json.loads(block[6:])
        if isinstance(data.get("usage"), dict):
            data["usage"]["cached"] = True
            blocks[i] = b"data: " + json.dumps(data).encode()
    return b"\n\n".join(blocks)
