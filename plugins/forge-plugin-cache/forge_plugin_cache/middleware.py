"""ASGI middleware answering repeated deterministic completion requests from the cache.

It works on the raw HTTP exchange of ``POST /v1/chat/completions`` and ``POST
/v1/completions`` (JSON body in; JSON or SSE body out), not on the OpenAI plugin's internals,
so it needs nothing from the endpoint but the wire format. On a miss the response streams to
the client as it is produced while a copy is kept; a complete, successful answer (every choice
finished with ``stop``/``length``, a stream closed by ``[DONE]``) is then stored. A hit replays
the stored bytes with ``usage.cached = true`` and never reaches the engine.

Every answer carries ``x-forge-cache: hit | miss | bypass`` (and on a hit
``x-forge-cache-source``: the tier, plus ``x-forge-cache-similarity`` for a semantic match).
Opt-outs: ``"cache": false`` in the body or ``Cache-Control: no-store`` skip the cache
entirely; ``Cache-Control: no-cache`` skips the lookup but stores the fresh answer.

Identical non-streaming requests arriving while the first is being generated wait for it and
are answered from the cache (request coalescing), so a burst costs one generation. Streams are
not held back: a follower would see nothing until the leader finished, worse than generating
alongside it in the same batch.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from forge_kernel.log import get_logger
from forge_plugin_cache.entry import CachedResponse, complete, kept_headers, mark_cached
from forge_plugin_cache.keys import ROUTES, SHARED_IDENTITY, CacheRequest, cache_request
from forge_plugin_cache.store import Hit, ResponseCache

log = get_logger("forge.cache")
ANONYMOUS = "anonymous"


def identity_of(scope: dict[str, Any], share_across_keys: bool) -> str:
    """Whose cache a request uses: the API key's name the auth middleware stored in
    ``scope["state"]["api_key_name"]`` (never the key itself), ``anonymous`` without auth."""
    if share_across_keys:
        return SHARED_IDENTITY
    name = (scope.get("state") or {}).get("api_key_name")
    return f"key:{name}" if name else ANONYMOUS


def _cache_control(scope: dict[str, Any]) -> set[str]:
    directives: set[str] = set()
    for name, value in scope.get("headers", ()):
        if name == b"cache-control":
            directives |= {d.strip().lower() for d in value.decode("latin-1").split(",")}
    return directives


async def _read_body(receive: Any) -> tuple[bytes | None, Any]:
    """The whole request body (``None`` if the client left) and a ``receive`` that hands it
    to the app once, then passes through (so the app still sees a later disconnect)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None, receive
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body, replayed = b"".join(chunks), False

    async def replay() -> dict[str, Any]:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _error(message: str, param: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                 "param": param, "code": "invalid_value"}}).encode()


class CacheMiddleware:
    """``CacheMiddleware(app, cache, fingerprint, share_across_keys=False)``."""

    def __init__(self, app: Any, cache: ResponseCache, fingerprint: str,
                 share_across_keys: bool = False) -> None:
        self.app = app
        self.cache = cache
        self.fingerprint = fingerprint
        self.share_across_keys = share_across_keys
        self._inflight: dict[str, asyncio.Event] = {}  # key -> set when its leader is done

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (scope["type"] != "http" or scope.get("method") != "POST"
                or scope["path"] not in ROUTES):
            await self.app(scope, receive, send)
            return
        raw, receive = await _read_body(receive)
        if raw is None:
            return  # the client left before sending its body: nobody to answer
        try:
            body = json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None  # the endpoint answers the 400
        if isinstance(body, dict) and "cache" in body and not isinstance(body["cache"], bool):
            await self._send(send, 400, [(b"content-type", b"application/json")],
                             _error("'cache' must be true or false", "cache"), "bypass")
            return
        directives = _cache_control(scope)
        request = None
        if (isinstance(body, dict) and body.get("cache") is not False
                and "no-store" not in directives):
            request = cache_request(scope["path"], body,
                                    identity_of(scope, self.share_across_keys), self.fingerprint)
        if request is None:
            self.cache.stats.requests["bypass"] += 1
            await self.app(scope, receive, _tagging(send, b"bypass"))
            return
        stream = bool(body.get("stream"))
        hit = None if "no-cache" in directives else await self._lookup(request)
        leader = self._inflight.get(request.key)
        if hit is None and leader is not None and not stream and "no-cache" not in directives:
            await leader.wait()
            hit = await self._lookup(request)  # None if the leader's answer was not stored
            self.cache.stats.coalesced += hit is not None
        if hit is not None:
            self.cache.stats.requests["hit"] += 1
            await self._replay(send, hit)
            return
        self.cache.stats.requests["miss"] += 1
        done = None
        if not stream and request.key not in self._inflight:
            done = self._inflight[request.key] = asyncio.Event()
        try:
            await self._forward_and_store(scope, receive, send, request, stream)
        finally:
            if done is not None:
                del self._inflight[request.key]
                done.set()

    async def _lookup(self, request: CacheRequest) -> Hit | None:
        try:
            return await self.cache.get(request)
        except Exception as exc:  # a cache fault must cost a miss, never the request
            log.warning("cache lookup failed", error=f"{type(exc).__name__}: {exc}")
            return None

    async def _replay(self, send: Any, hit: Hit) -> None:
        entry = hit.entry
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in entry.headers]
        headers.append((b"x-forge-cache-source", hit.tier.encode()))
        if hit.match == "semantic":
            headers.append((b"x-forge-cache-similarity", f"{hit.score:.4f}".encode()))
        await self._send(send, entry.status, headers, mark_cached(entry.body, entry.stream),
                         "hit")

    @staticmethod
    async def _send(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                    result: str) -> None:
        headers = [*headers, (b"content-length", str(len(body)).encode()),
                   (b"x-forge-cache", result.encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _forward_and_store(self, scope: dict[str, Any], receive: Any, send: Any,
                                 request: CacheRequest, stream: bool) -> None:
        limit = self.cache.max_entry_bytes
        seen: dict[str, Any] = {"status": None, "headers": [], "size": 0, "done": False}
        chunks: list[bytes] = []

        async def keep(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["status"], seen["headers"] = message["status"], message.get("headers", [])
            elif message["type"] == "http.response.body":
                part = message.get("body", b"")
                seen["size"] += len(part)
                if seen["size"] <= limit:
                    chunks.append(part)
                seen["done"] = not message.get("more_body", False)
            await send(message)

        await self.app(scope, receive, _tagging(keep, b"miss"))
        body = b"".join(chunks)
        if seen["status"] != 200 or not seen["done"] or seen["size"] > limit \
                or not complete(body, stream):
            self.cache.stats.skipped += 1
            return
        entry = CachedResponse(body=body, stream=stream, headers=kept_headers(seen["headers"]))
        try:
            await self.cache.put(request, entry)
        except Exception as exc:  # e.g. a full disk: the client already has its answer
            log.warning("cache store failed", error=f"{type(exc).__name__}: {exc}")


def _tagging(send: Any, result: bytes) -> Any:
    """``send`` that adds ``x-forge-cache: RESULT`` to the response start."""
    async def tagged(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message,
                       "headers": [*message.get("headers", []), (b"x-forge-cache", result)]}
        await send(message)

    return tagged
