"""Redis tier (``redis.asyncio``): entries are ``SET`` with the cache's TTL under a prefix.

Redis being down must never fail a request: a failed call marks the tier down, logs one
warning for the outage, and every lookup/store skips Redis until ``retry_seconds`` have
passed; then the next request tries again (and a recovery is logged). Calls have a short
socket timeout so a hung Redis costs at most that per request.
"""

from __future__ import annotations

import time
from typing import Any

from forge_kernel.log import get_logger
from forge_plugin_cache.backends import Backend

log = get_logger("forge.cache")


class RedisBackend(Backend):
    """``RedisBackend(url, prefix, ttl_seconds, timeout, retry_seconds)``."""

    name = "redis"

    def __init__(self, url: str, prefix: str = "forge:cache:", ttl_seconds: float = 0.0,
                 timeout: float = 0.5, retry_seconds: float = 10.0,
                 clock: Any = time.monotonic) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.prefix = prefix
        self.ttl_ms = int(ttl_seconds * 1000) if ttl_seconds > 0 else None
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._client = aioredis.Redis.from_url(url, socket_timeout=timeout,
                                               socket_connect_timeout=timeout,
                                               retry_on_timeout=False)
        self._down_until: float | None = None
        self.failures = 0

    def up(self) -> bool:
        return self._down_until is None

    def _available(self) -> bool:
        return self._down_until is None or self._clock() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self._down_until is None:  # once per outage, not once per request
            log.warning("redis cache tier unavailable: bypassed, retried every "
                        f"{self.retry_seconds:g} s", url=_safe_url(self.url),
                        error=f"{type(exc).__name__}: {exc}")
        self._down_until = self._clock() + self.retry_seconds

    def _succeeded(self) -> None:
        if self._down_until is not None:
            log.info("redis cache tier is back", url=_safe_url(self.url))
            self._down_until = None

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        from redis.exceptions import RedisError

        if not self._available():
            return None
        try:
            result = await getattr(self._client, method)(*args, **kwargs)
        except (RedisError, OSError) as exc:  # connection refused/reset, timeouts
            self._failed(exc)
            return None
        self._succeeded()
        return result

    async def get(self, key: str) -> bytes | None:
        return await self._call("get", self.prefix + key)

    async def put(self, key: str, data: bytes) -> None:
        await self._call("set", self.prefix + key, data, px=self.ttl_ms)

    async def delete(self, key: str) -> None:
        await self._call("delete", self.prefix + key)

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except Exception:  # closing a client whose server is gone must not fail shutdown
            pass


def _safe_url(url: str) -> str:
    """The URL without a password (``redis://:secret@host`` -> ``redis://***@host``)."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url
