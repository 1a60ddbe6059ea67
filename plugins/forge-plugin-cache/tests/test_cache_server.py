"""A real ``forge serve`` (default model) with the cache on, driven with the openai SDK.

One server with the memory tier (+ semantic matching, auth keys, metrics) covers hits on both
endpoints, stream replay, opt-outs and key isolation; then disk and Redis are shown across
restarts: a first server stores an answer in both, a second one (disk only, same FORGE_HOME)
and a third (Redis only, fresh home) answer it from their tier, and the third keeps serving
when Redis is killed. "Zero new tokens" is read from the engine's own counters in /metrics.
``max_tokens`` stays tiny: the model runs on the CPU.
"""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis_helper import RedisServer

from forge_kernel.testing.server import ForgeServer, start_server

SERVER_ARGS = ["--threads", "2", "--num-blocks", "32", "--block-size", "16",
               "--max-model-len", "512", "--max-batch-size", "4"]
MODEL = "gemma3-270m"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def cache_env(**values) -> dict[str, str]:
    return {"FORGE_CACHE_ENABLED": "1",
            **{f"FORGE_CACHE_{k.upper()}": str(v) for k, v in values.items()}}


def metrics(server: ForgeServer, key: str | None = None) -> dict:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    text = httpx.get(server.url + "/metrics", headers=headers, timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def generated(server: ForgeServer, key: str | None = None) -> tuple[float, float]:
    """The engine's (tokens generated, requests finished) so far."""
    m = metrics(server, key)
    finished = sum(v for (name, _), v in m.items() if name == "forge_requests_finished_total")
    return m.get(("forge_generation_tokens_total", ()), 0.0), finished


def settled(server: ForgeServer, key: str | None = None, timeout: float = 10) -> tuple:
    """Counters once the engine observer has recorded every finished request."""
    last, deadline = generated(server, key), time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = generated(server, key)
        if now == last:
            return now
        last = now
    return last


def stop_cleanly(server: ForgeServer) -> None:
    code = server.stop()
    assert code == 0, f"forge serve exited with {code}:\n{server.log()[-3000:]}"


@pytest.fixture(scope="module")
def memory_server(tmp_path_factory):
    from forge_plugin_auth.keys import KeyStore

    home = tmp_path_factory.mktemp("cache-memory")
    store = KeyStore(home / "auth.sqlite3")
    keys = {name: store.create(name)[0] for name in ("alice", "bob")}
    server = start_server(SERVER_ARGS, home, env=cache_env(
        backends="memory", semantic="1", semantic_threshold="0.9"),
        headers={"authorization": f"Bearer {keys['alice']}"})
    yield server, keys
    stop_cleanly(server)


def sdk(server: ForgeServer, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=120)


def chat(client, **extra):
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=extra.pop("messages", MESSAGES), max_tokens=4, temperature=0,
        **extra)
    return raw.headers, raw.http_response.json()


def test_memory_hit_identical_body_zero_new_tokens(memory_server):
    memory_server, keys = memory_server
    alice = keys["alice"]
    client = sdk(memory_server, alice)
    headers, first = chat(client)
    assert headers["x-forge-cache"] == "miss" and first["usage"]["completion_tokens"] > 0
    before = settled(memory_server, alice)
    headers, second = chat(client)
    assert headers["x-forge-cache"] == "hit" and headers["x-forge-cache-source"] == "memory"
    assert second["usage"].pop("cached") is True and second == first
    raw = client.completions.with_raw_response.create(model=MODEL, prompt="The sky is",
                                                      max_tokens=3, temperature=0)
    again = client.completions.with_raw_response.create(model=MODEL, prompt="The sky is",
                                                        max_tokens=3, temperature=0)
    assert (raw.headers["x-forge-cache"], again.headers["x-forge-cache"]) == ("miss", "hit")
    assert again.parse().choices[0].text == raw.parse().choices[0].text
    generated_tokens, finished = settled(memory_server, alice)
    assert generated_tokens == before[0] + raw.parse().usage.completion_tokens
    assert finished == before[1] + 1  # only the completion's miss reached the engine
    m = metrics(memory_server, alice)
    assert m[("forge_cache_requests_total", (("result", "hit"),))] >= 2
    assert m[("forge_cache_hits_total", (("match", "exact"), ("tier", "memory")))] >= 2


def test_stream_is_replayed(memory_server):
    memory_server, keys = memory_server
    client = sdk(memory_server, keys["alice"])

    def run():
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=MESSAGES, max_tokens=4, seed=11, stream=True,
            stream_options={"include_usage": True})
        chunks = list(raw.parse())
        return raw.headers["x-forge-cache"], chunks

    (first_result, first), (second_result, second) = run(), run()
    assert (first_result, second_result) == ("miss", "hit")
    text = ["".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            for chunks in (first, second)]
    assert text[0] == text[1] and text[0]
    assert [c.id for c in first] == [c.id for c in second]
    assert second[-1].usage.model_extra.get("cached") is True
    assert second[-1].usage.completion_tokens == first[-1].usage.completion_tokens


def test_opt_outs_reach_the_engine(memory_server):
    memory_server, keys = memory_server
    alice = keys["alice"]
    client = sdk(memory_server, alice)
    chat(client)  # stored (or already there)
    before = settled(memory_server, alice)
    headers, _ = chat(client, extra_body={"cache": False})
    assert headers["x-forge-cache"] == "bypass"
    headers, _ = chat(client, extra_headers={"Cache-Control": "no-cache"})
    assert headers["x-forge-cache"] == "miss"
    assert settled(memory_server, alice)[1] == before[1] + 2


def test_api_keys_do_not_share_answers(memory_server):
    memory_server, keys = memory_server
    alice, bob = sdk(memory_server, keys["alice"]), sdk(
        memory_server, keys["bob"])
    messages = [{"role": "user", "content": "Name a colour."}]
    assert chat(alice, messages=messages)[0]["x-forge-cache"] == "miss"
    assert chat(bob, messages=messages)[0]["x-forge-cache"] == "miss"
    assert chat(bob, messages=messages)[0]["x-forge-cache"] == "hit"
    with pytest.raises(openai.AuthenticationError):
        chat(sdk(memory_server, "fk_not_a_key"), messages=messages)


def test_semantic_match_answers_a_paraphrase(memory_server):
    memory_server, keys = memory_server
    client = sdk(memory_server, keys["alice"])
    _, first = chat(client, messages=[{"role": "user", "content": "Tell me about cats."}])
    headers, similar = chat(client, messages=[{"role": "user",
                                               "content": "tell me about cats"}])
    assert headers["x-forge-cache"] == "hit"
    assert float(headers["x-forge-cache-similarity"]) >= 0.9
    assert similar["choices"] == first["choices"]
    headers, _ = chat(client, messages=[{"role": "user", "content": "How do planes fly?"}])
    assert headers["x-forge-cache"] == "miss"


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
