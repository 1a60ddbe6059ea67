"""The storage tiers: memory LRU by bytes, disk (atomic, size-bounded) and a real Redis."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from cache_redis import RedisServer
from forge_plugin_cache.backends.disk import DiskBackend
from forge_plugin_cache.backends.memory import MemoryBackend
from forge_plugin_cache.backends.redis_tier import RedisBackend
from forge_plugin_cache.entry import CachedResponse
from forge_plugin_cache.keys import CacheRequest
from forge_plugin_cache.store import ResponseCache


def run(coro):
    return asyncio.run(coro)


def k(i: int) -> str:
    return f"{i:064x}"


def test_memory_lru_is_bounded_by_bytes_and_keeps_recently_used():
    async def scenario():
        tier = MemoryBackend(max_bytes=300)
        for i in range(3):
            await tier.put(k(i), bytes(100))
        assert tier.usage() == (3, 300)
        assert await tier.get(k(0)) is not None  # 0 is now the most recent
        await tier.put(k(3), bytes(100))  # evicts 1, the least recently used
        assert k(1) not in tier and k(0) in tier and k(3) in tier
        await tier.put(k(4), bytes(250))  # needs 250: evicts until it fits
        assert tier.usage() == (1, 250) and k(4) in tier
        await tier.put(k(5), bytes(301))  # larger than the whole tier: not stored
        assert k(5) not in tier and tier.usage() == (1, 250)
        await tier.put(k(4), bytes(10))  # replacing updates the byte count
        assert tier.usage() == (1, 10)
    run(scenario())


def test_disk_writes_atomically_and_bounds_its_size(tmp_path):
    async def scenario():
        tier = DiskBackend(tmp_path, max_bytes=1000)
        for i in range(4):
            await tier.put(k(i), bytes([i]) * 300)
            os.utime(tier._path(k(i)), ns=(i * 10**9, i * 10**9))  # distinct mtimes
        files = sorted(tmp_path.glob("*/*"))
        assert all(f.name.endswith(".entry") for f in files)  # no temporary files left
        assert tier.usage() == (3, 900) and await tier.get(k(0)) is None  # oldest evicted
        assert await tier.get(k(1)) == bytes([1]) * 300
        total = sum(f.stat().st_size for f in tmp_path.glob("*/*"))
        assert total <= 1000
        await tier.delete(k(2))
        assert tier.usage() == (2, 600)
    run(scenario())


def test_disk_index_survives_a_restart_and_evicts_least_recent_first(tmp_path):
    async def scenario():
        tier = DiskBackend(tmp_path, max_bytes=10_000)
        for i in range(3):
            await tier.put(k(i), bytes(100))
            os.utime(tier._path(k(i)), ns=((10 + i) * 10**9,) * 2)
        await tier.get(k(0))  # a hit refreshes 0's mtime: now the most recent
        (tmp_path / "ab").mkdir(exist_ok=True)
        (tmp_path / "ab" / "crashed-write.tmp").write_bytes(b"half")
        again = DiskBackend(tmp_path, max_bytes=250)  # smaller bound: keeps the 2 newest
        assert again.usage() == (2, 200)
        assert await again.get(k(1)) is None
        assert await again.get(k(0)) is not None and await again.get(k(2)) is not None
        assert not (tmp_path / "ab" / "crashed-write.tmp").exists()
        with pytest.raises(ValueError):
            again._path("../../etc/passwd")
    run(scenario())


def test_tiers_promote_expire_and_drop_corrupt_entries(tmp_path):
    async def scenario():
        memory, disk = MemoryBackend(1 << 20), DiskBackend(tmp_path, 1 << 20)
        cache = ResponseCache([memory, disk], ttl_seconds=60)
        request = CacheRequest(k(1), k(2), None)
        entry = CachedResponse(b'{"x":1}', stream=False)
        await cache.put(request, entry)
        await memory.delete(k(1))
        hit = await cache.get(request)
        assert hit.tier == "disk" and hit.entry.body == b'{"x":1}'
        assert k(1) in memory  # promoted
        assert (await cache.get(request)).tier == "memory"
        old = CachedResponse(b"{}", stream=False, stored_at=time.time() - 120)
        await memory.put(k(3), old.encode())
        assert await cache.get(CacheRequest(k(3), k(2), None)) is None  # expired
        assert k(3) not in memory
        await disk.put(k(4), b"not an entry")
        assert await cache.get(CacheRequest(k(4), k(2), None)) is None
        assert await disk.get(k(4)) is None  # dropped
        big = ResponseCache([memory], max_entry_bytes=100)
        assert not await big.put(request, CachedResponse(bytes(200), stream=False))
    run(scenario())


def test_redis_round_trip_ttl_outage_and_recovery(tmp_path):
    server = RedisServer(tmp_path).start()
    clock = [0.0]
    try:
        async def scenario():
            tier = RedisBackend(server.url, prefix="t:", ttl_seconds=30, timeout=0.5,
                                retry_seconds=5, clock=lambda: clock[0])
            await tier.put(k(1), b"abc")
            assert await tier.get(k(1)) == b"abc" and tier.up()
            import redis

            ttl = redis.Redis.from_url(server.url).pttl("t:" + k(1))
            assert 0 < ttl <= 30_000
            server.stop()
            assert await tier.get(k(1)) is None  # refused: bypassed, not raised
            assert not tier.up() and tier.failures == 1
            await tier.put(k(2), b"x")  # within retry_seconds: not even tried
            assert await tier.get(k(1)) is None and tier.failures == 1
            server.start()  # same port; a fresh server holds nothing
            assert await tier.get(k(1)) is None and tier.failures == 1  # still backing off
            clock[0] = 6.0
            await tier.put(k(3), b"back")
            assert tier.up() and await tier.get(k(3)) == b"back"
            await tier.close()
        run(scenario())
    finally:
        server.stop()
