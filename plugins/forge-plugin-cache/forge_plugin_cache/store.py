"""The tiered response cache: lookups go through the tiers in order, stores go to all.

A hit in a later tier (disk, Redis) is copied into the earlier ones (memory), so the next hit
is cheaper. Entries past the TTL, or bytes that do not decode (a truncated file, a foreign
value under our Redis prefix), are misses and are deleted. Counters here feed ``/metrics``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from forge_kernel.log import get_logger
from forge_plugin_cache.backends import Backend
from forge_plugin_cache.entry import CachedResponse
from forge_plugin_cache.keys import CacheRequest
from forge_plugin_cache.semantic import SemanticIndex

log = get_logger("forge.cache")


@dataclass(slots=True)
class CacheStats:
    """What the cache did: ``requests`` by result (hit/miss/bypass), ``hits`` by
    ``(tier, match)`` with match ``exact`` or ``semantic``, ``stores``, ``skipped`` stores
    (incomplete, failed or oversized responses) and ``coalesced`` hits (requests that waited
    for an identical one in flight)."""

    requests: Counter = field(default_factory=Counter)
    hits: Counter = field(default_factory=Counter)
    stores: int = 0
    skipped: int = 0
    coalesced: int = 0


@dataclass(slots=True)
class Hit:
    """A cached answer and where it came from."""

    entry: CachedResponse
    tier: str
    match: str = "exact"
    score: float = 1.0


class ResponseCache:
    """``ResponseCache(tiers, ttl_seconds, max_entry_bytes, semantic=None)``."""

    def __init__(self, tiers: list[Backend], ttl_seconds: float = 0.0,
                 max_entry_bytes: int = 1 << 20, semantic: SemanticIndex | None = None) -> None:
        if not tiers:
            raise ValueError("a response cache needs at least one tier")
        self.tiers = tiers
        self.ttl_seconds = ttl_seconds
        self.max_entry_bytes = max_entry_bytes
        self.semantic = semantic
        self.stats = CacheStats()

    async def _exact(self, key: str) -> Hit | None:
        for depth, tier in enumerate(self.tiers):
            data = await tier.get(key)
            if data is None:
                continue
            try:
                entry = CachedResponse.decode(data)
            except ValueError:
                log.warning("unreadable cache entry dropped", tier=tier.name, key=key[:16])
                await tier.delete(key)
                continue
            if entry.expired(self.ttl_seconds):
                await tier.delete(key)
                continue
            for upper in self.tiers[:depth]:
                await upper.put(key, data)
            return Hit(entry, tier.name)
        return None

    async def get(self, request: CacheRequest) -> Hit | None:
        """The cached answer of ``request``: an exact hit, else (with semantic matching on)
        the entry of the most similar prompt in its group, else ``None``."""
        hit = await self._exact(request.key)
        if hit is None and self.semantic is not None and request.text is not None:
            vector = await self.semantic.vector(request.text)
            found = self.semantic.match(request.group, vector)
            if found is not None:
                hit = await self._exact(found[0])
                if hit is None:  # evicted or expired in every tier meanwhile
                    self.semantic.remove(found[0])
                else:
                    hit.match, hit.score = "semantic", found[1]
        if hit is not None:
            self.stats.hits[(hit.tier, hit.match)] += 1
        return hit

    async def put(self, request: CacheRequest, entry: CachedResponse) -> bool:
        """Store in every tier; ``False`` (nothing stored) when the entry is too large."""
        data = entry.encode()
        if len(data) > self.max_entry_bytes:
            self.stats.skipped += 1
            return False
        for tier in self.tiers:
            await tier.put(request.key, data)
        if self.semantic is not None and request.text is not None:
            self.semantic.add(request.group, request.key,
                              await self.semantic.vector(request.text))
        self.stats.stores += 1
        return True

    async def close(self) -> None:
        for tier in self.tiers:
            await tier.close()
