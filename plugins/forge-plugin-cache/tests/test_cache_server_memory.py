"""A real ``forge serve`` (default model) with the memory tier, semantic matching, two auth
keys and metrics, driven with the openai SDK: hits on both endpoints with identical bodies and
zero engine tokens (the engine's own counters in /metrics), stream replay, opt-outs, key
isolation, a paraphrase answered semantically. ``max_tokens`` stays tiny: the model runs on
the CPU. The server lives for this module only (the tier tests start their own).
"""

from __future__ import annotations

import openai
import pytest
from cache_server import (
    MESSAGES,
    MODEL,
    SERVER_ARGS,
    cache_env,
    chat,
    metrics,
    sdk,
    settled,
    stop_cleanly,
)

from forge_kernel.testing.server import start_server


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
