"""ASGI middleware enforcing API keys and rate limits on every HTTP and WebSocket route.

It wraps the whole application, so routes added by any plugin are covered. Health routes
(``/health`` and ``/health/...``, nothing else that merely starts with those letters) are exempt
so load balancers can probe without a key; ``/metrics`` is exempt only when configured
(``[auth] public_metrics = true``).

Keys never reach the logs. A refused request is logged (``auth refused``: status, reason, path,
client and, for a known key, its *name*); an admitted one carries ``key_name`` in its log context
(structlog context variables) and in ``scope["state"]["api_key_name"]``. No part of a presented
credential is ever logged: a wrong one may be a real key of another system.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from forge_kernel.log import get_logger
from forge_kernel.usage import usage_listener
from forge_plugin_auth.keys import KeyStore, hashes_equal
from forge_plugin_auth.limits import RateLimiter

HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"

STATIC_KEY_NAME = "static"
"""The name requests admitted with the ``--api-key`` / ``FORGE_API_KEY`` key go by."""

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


def is_exempt(path: str, public_metrics: bool = False) -> bool:
    """Whether ``path`` is served without a key: the health probes, and ``/metrics`` if asked.

    Exact segments, not string prefixes: ``/healthz`` or ``/health-admin`` (a route another
    plugin might add) are protected like everything else.
    """
    if path == HEALTH_PATH or path.startswith(HEALTH_PATH + "/"):
        return True
    return public_metrics and path == METRICS_PATH


def _error_body(message: str, kind: str, code: str) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": code}}
    ).encode()


class AuthMiddleware:
    """``AuthMiddleware(app, store, static_key=None)``: the ASGI application wrapper."""

    def __init__(self, app: Any, store: KeyStore, static_key: str | None = None,
                 limiter: RateLimiter | None = None, public_metrics: bool = False) -> None:
        self.app = app
        self.store = store
        self._static_hash = hashlib.sha256(static_key.encode()).hexdigest() if static_key else None
        self.limiter = limiter or RateLimiter()
        self.public_metrics = public_metrics

    def enabled(self) -> bool:
        return self._static_hash is not None or self.store.has_keys()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or is_exempt(scope["path"],
                                                                  self.public_metrics):
            await self.app(scope, receive, send)
            return
        if not self.enabled():
            await self.app(scope, receive, send)
            return
        presented = _bearer(scope)
        if presented is None:
            await self._deny(scope, receive, send, 401, _MESSAGES["missing"], "missing")
            return
        presented_hash = hashlib.sha256(presented.encode()).hexdigest()
        if self._static_hash is not None and hashes_equal(presented_hash, self._static_hash):
            await self._admit(scope, receive, send, STATIC_KEY_NAME)
            return
        verdict = self.store.verify(presented)
        if not verdict.ok:
            name = verdict.key.name if verdict.key is not None else None
            await self._deny(scope, receive, send, 401, _MESSAGES[verdict.reason],
                             verdict.reason, name)
            return
        key = verdict.key
        decision = self.limiter.admit(key.key_id, key.rpm, key.tpm)
        if not decision.allowed:
            retry = max(1, math.ceil(decision.retry_after))
            message = (f"Rate limit reached for API key '{key.name}': {decision.reason}. "
                       f"Retry after {retry} s.")
            await self._deny(scope, receive, send, 429, message, "rate_limited", key.name,
                             extra_headers=[(b"retry-after", str(retry).encode())])
            return
        with usage_listener(lambda p, c: self.limiter.add_tokens(key.key_id, p + c)):
            await self._admit(scope, receive, send, key.name)

    async def _admit(self, scope, receive, send, key_name: str) -> None:
        import structlog

        scope.setdefault("state", {})["api_key_name"] = key_name
        with structlog.contextvars.bound_contextvars(key_name=key_name):
            await self.app(scope, receive, send)

    async def _deny(self, scope, receive, send, status: int, message: str, reason: str,
                    key_name: str | None = None,
                    extra_headers: list[tuple[bytes, bytes]] = ()) -> None:
        client = scope.get("client")
        log = get_logger("forge.auth")
        (log.warning if status == 401 else log.info)(
            "auth refused", status=status, reason=reason, key_name=key_name,
            path=scope["path"], transport=scope["type"], client=client[0] if client else None)
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
