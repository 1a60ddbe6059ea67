"""Which requests are cacheable and how they are keyed."""

from __future__ import annotations

import pytest
from forge_plugin_cache.config import CacheConfig
from forge_plugin_cache.entry import CachedResponse, complete, mark_cached, sse_events
from forge_plugin_cache.keys import cache_request, deterministic, normalize

from forge_kernel.errors import ConfigError

CHAT = "/v1/chat/completions"
COMP = "/v1/completions"
MSG = [{"role": "user", "content": "Hi"}]


def key(body, route=CHAT, identity="key:a", model="m"):
    request = cache_request(route, body, identity, model)
    return request.key if request else None


@pytest.mark.parametrize("body, expected", [
    ({"temperature": 0}, True), ({"temperature": 0.0}, True), ({"seed": 7}, True),
    ({"temperature": 0.8, "seed": 1}, True), ({}, False), ({"temperature": 0.7}, False),
    ({"temperature": False}, False), ({"seed": True}, False), ({"seed": "7"}, False),
    ({"temperature": "0"}, False),
])
def test_only_deterministic_requests_are_cacheable(body, expected):
    assert deterministic(body) is expected
    assert (key({"messages": MSG, **body}) is not None) is expected


def test_volatile_fields_and_spelled_out_defaults_do_not_split_the_cache():
    base = {"model": "m", "messages": MSG, "temperature": 0, "max_tokens": 5}
    same = [{**base, "user": "u1", "metadata": {"a": 1}, "store": True, "cache": True},
            {**base, "n": 1, "stream": False, "presence_penalty": 0.0, "logprobs": False},
            {**{k: v for k, v in base.items() if k != "max_tokens"},
             "max_completion_tokens": 5},
            {**base, "stream_options": {"include_usage": True}},  # ignored without stream
            {**base, "top_p": None}]
    assert {key(b) for b in same} == {key(base)}


@pytest.mark.parametrize("change", [
    {"n": 2}, {"logprobs": True}, {"top_logprobs": 2, "logprobs": True}, {"stop": ["x"]},
    {"max_tokens": 6}, {"model": "other"}, {"stream": True}, {"seed": 3},
    {"messages": [{"role": "user", "content": "Hi!"}]}, {"presence_penalty": 0.5},
])
def test_everything_that_changes_the_answer_is_in_the_key(change):
    base = {"model": "m", "messages": MSG, "temperature": 0, "max_tokens": 5}
    assert key({**base, **change}) != key(base)


def test_completion_logprobs_zero_is_not_false_and_max_tokens_default():
    base = {"prompt": "Hi", "temperature": 0}
    assert key({**base, "logprobs": 0}, COMP) != key(base, COMP)
    assert key({**base, "max_tokens": 16}, COMP) == key(base, COMP)
    assert normalize(COMP, base)["max_tokens"] == 16


def test_identity_route_and_model_fingerprint_are_in_the_key():
    body = {"messages": MSG, "temperature": 0}
    assert key(body, identity="key:a") != key(body, identity="key:b")
    assert key(body, model="m") != key(body, model="m2")
    assert key({"prompt": "Hi", "temperature": 0}, COMP) != key(
        {"prompt": "Hi", "temperature": 0}, COMP, identity="key:b")
    request = cache_request(CHAT, body, "key:a", "m")
    other = cache_request(CHAT, {**body, "messages": [{"role": "user", "content": "Ho"}]},
                          "key:a", "m")
    assert request.group == other.group and request.key != other.key
    assert request.text == "user: Hi"


def test_entry_round_trip_and_corrupt_bytes():
    entry = CachedResponse(b'{"a":1}', stream=False, headers=[("content-type", "x")])
    back = CachedResponse.decode(entry.encode())
    assert (back.body, back.stream, back.headers, back.status) == (
        entry.body, False, [("content-type", "x")], 200)
    for bad in (b"", b"garbage", b'{"f": 99}\nbody', b"\xff\xfe\n"):
        with pytest.raises(ValueError):
            CachedResponse.decode(bad)
    assert entry.expired(10, now=entry.stored_at + 11)
    assert not entry.expired(0, now=entry.stored_at + 1e9)


def _sse(*chunks):
    import json

    return b"".join(b"data: " + (c if isinstance(c, bytes) else json.dumps(c).encode())
                    + b"\n\n" for c in chunks)


def test_only_complete_successful_answers_are_stored():
    ok = b'{"choices":[{"index":0,"finish_reason":"stop"}],"usage":{"completion_tokens":2}}'
    assert complete(ok, stream=False)
    assert not complete(ok.replace(b"stop", b"abort"), stream=False)
    assert not complete(b'{"error":{"message":"x"}}', stream=False)
    assert not complete(b"not json", stream=False)
    first = {"choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None}]}
    last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
    usage = {"choices": [], "usage": {"completion_tokens": 1}}
    assert complete(_sse(first, last, usage, b"[DONE]"), stream=True)
    assert not complete(_sse(first, last), stream=True)  # no [DONE]: cut short
    assert not complete(_sse(first, b"[DONE]"), stream=True)  # never finished
    assert not complete(_sse(first, {"error": {"message": "x"}}, b"[DONE]"), stream=True)
    two = {"choices": [{"index": 1, "delta": {"content": "b"}, "finish_reason": None}]}
    assert not complete(_sse(first, two, last, b"[DONE]"), stream=True)  # choice 1 unfinished


def test_mark_cached_adds_usage_cached_only():
    import json

    body = b'{"id":"x","choices":[],"usage":{"completion_tokens":2}}'
    marked = json.loads(mark_cached(body, stream=False))
    assert marked["usage"] == {"completion_tokens": 2, "cached": True} and marked["id"] == "x"
    stream = _sse({"choices": [{"index": 0}], "usage": None},
                  {"choices": [], "usage": {"completion_tokens": 1}}, b"[DONE]")
    events = sse_events(mark_cached(stream, stream=True))
    assert events[0]["usage"] is None and events[1]["usage"]["cached"] is True
    assert events[2] == "[DONE]"


def test_config_validation_names_the_key():
    assert CacheConfig.from_section({"backends": "memory, disk,redis"}).tiers() == [
        "memory", "disk", "redis"]
    for bad, name in [({"backends": "memcached"}, "backends"), ({"backends": ""}, "backends"),
                      ({"backends": "memory,memory"}, "backends"),
                      ({"memory_max_bytes": 0}, "memory_max_bytes"),
                      ({"semantic_threshold": 1.5}, "semantic_threshold"),
                      ({"ttl_seconds": -1}, "ttl_seconds")]:
        with pytest.raises(ConfigError, match=name):
            CacheConfig.from_section(bad)
