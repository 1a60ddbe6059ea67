"""ASGI middleware enforcing API keys and rate limits on every HTTP and WebSocket route.

It wraps the whole application, so routes added by any plugin are covered. Health routes are
exempt so load balancers can probe without a key. Keys never reach the logs: only the key's
name is bound to the request's log context.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from forge_kernel.usage import usage_listener
from forge_plugin_auth.keys import KeyStore, hashes_equal
from forge_plugin_auth.limits import RateLimiter

EXEMPT_PREFIXES = ("/health",)

_MESSAGES = {
    "missing": "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
    "invalid": "Incorrect API key provided.",
    "revoked": "This API key has been revoked.",
    "expired": "This API key has expired.",
}


_ERROR_KINDS = {
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def _bearer(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def _error_body(message: str, kind: str, code: str) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": code}}
    ).encode()


class AuthMiddleware:
    """``AuthMiddleware(app, store, static_key=None)``: the ASGI application wrapper."""

    def __init__(self, app: Any, store: KeyStore, static_key: str | None = None,
                 limiter: RateLimiter | None = None) -> None:
        self.app = app
        self.store = store
        self._static_hash = hashlib.sha256(static_key.encode()).hexdigest() if static_key else None
        self.limiter = limiter or RateLimiter()

    def enabled(self) -> bool:
        return self._static_hash is not None or self.store.has_keys()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"].startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        if not self.enabled():
            await self.app(scope, receive, send)
            return
        presented = _bearer(scope)
        if presented is None:
            await self._deny(scope, receive, send, 401, _MESSAGES["missing"])
            return
        presented_hash = hashlib.sha256(presented.encode()).hexdigest()
        if self._static_hash is not None and hashes_equal(presented_hash, self._static_hash):
            await self.app(scope, receive, send)
            return
        verdict = self.store.verify(presented)
        if not verdict.ok:
            await self._deny(scope, receive, send, 401, _MESSAGES[verdict.reason])
            return
        key = verdict.key
        decision = self.limiter.admit(key.key_id, key.rpm, key.tpm)
        if not decision.allowed:
            retry = max(1, math.ceil(decision.retry_after))
            message = (f"Rate limit reached for API key '{key.name}': {decision.reason}. "
                       f"Retry after {retry} s.")
            await self._deny(scope, receive, send, 429, message,
                             extra_headers=[(b"retry-after", str(retry).encode())])
            return
        scope.setdefault("state", {})["api_key_name"] = key.name
        with usage_listener(lambda p, c: self.limiter.add_tokens(key.key_id, p + c)):
            await self.app(scope, receive, send)

    async def _deny(self, scope, receive, send, status: int, message: str,
                    extra_headers: list[tuple[bytes, bytes]] = ()) -> None:
        body = _error_body(message, *_ERROR_KINDS[status])
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()), *extra_headers]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        if scope["type"] == "websocket":
            await receive()  # the handshake's websocket.connect, answered below
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif "websocket.http.response" in scope.get("extensions", {}):
            # ASGI denial-response extension: a real HTTP 401/429 on the handshake
            await send({"type": "websocket.http.response.start", "status": status,
                        "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
