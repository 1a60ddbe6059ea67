"""Disk and Redis tiers on real ``forge serve`` runs: a first server stores an answer in both,
a second one (disk only, same FORGE_HOME) answers it after the restart, a third (Redis only,
fresh home) answers it from Redis and keeps serving when Redis is killed (bypassed, logged
once) and uses Redis again once it is back.
"""

from __future__ import annotations

import time

import pytest
from cache_redis import RedisServer
from cache_server import SERVER_ARGS, cache_env, chat, metrics, sdk, settled, stop_cleanly

from forge_kernel.testing.server import start_server


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Redis up, and one answer stored by a server with the disk and Redis tiers."""
    redis = RedisServer(tmp_path_factory.mktemp("redis")).start()
    home = tmp_path_factory.mktemp("cache-disk")
    server = start_server(SERVER_ARGS, home, env=cache_env(backends="disk,redis",
                                                           redis_url=redis.url))
    try:
        headers, body = chat(sdk(server))
        assert headers["x-forge-cache"] == "miss"
    finally:
        stop_cleanly(server)
    yield {"redis": redis, "home": home, "body": body}
    redis.stop()


def test_disk_tier_answers_after_a_restart(stored):
    server = start_server(SERVER_ARGS, stored["home"], env=cache_env(backends="disk"))
    try:
        before = settled(server)
        headers, body = chat(sdk(server))
        assert headers["x-forge-cache"] == "hit" and headers["x-forge-cache-source"] == "disk"
        assert body["usage"].pop("cached") is True and body == stored["body"]
        assert settled(server) == before
    finally:
        stop_cleanly(server)


def test_redis_tier_answers_another_server_and_survives_an_outage(stored, tmp_path):
    redis = stored["redis"]
    server = start_server(SERVER_ARGS, tmp_path / "home", env=cache_env(
        backends="redis", redis_url=redis.url, redis_retry_seconds="1"))
    try:
        client = sdk(server)
        before = settled(server)
        headers, body = chat(client)
        assert headers["x-forge-cache"] == "hit" and headers["x-forge-cache-source"] == "redis"
        assert body["usage"].pop("cached") is True and body == stored["body"]
        assert settled(server) == before
        redis.stop()
        for _ in range(3):  # served by the engine, cache bypassed
            headers, body = chat(client)
            assert headers["x-forge-cache"] == "miss" and body["choices"]
        m = metrics(server)
        assert m[("forge_cache_tier_up", (("tier", "redis"),))] == 0
        assert server.log().count("redis cache tier unavailable") == 1
        redis.start()
        time.sleep(1.2)  # past redis_retry_seconds
        chat(client)  # tries Redis again and stores there
        headers, _ = chat(client)
        assert headers["x-forge-cache"] == "hit" and headers["x-forge-cache-source"] == "redis"
        assert "redis cache tier is back" in server.log()
    finally:
        stop_cleanly(server)
