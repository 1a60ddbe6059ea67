"""The middleware in-process, in front of a stand-in endpoint that counts what it generates,
behind the real auth middleware (identity from ``scope["state"]``)."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from forge_plugin_auth.keys import KeyStore
from forge_plugin_auth.middleware import AuthMiddleware
from forge_plugin_cache.backends.memory import MemoryBackend
from forge_plugin_cache.middleware import CacheMiddleware
from forge_plugin_cache.semantic import SemanticIndex
from forge_plugin_cache.store import ResponseCache

CHAT = "/v1/chat/completions"


def endpoint(calls: list):
    app = FastAPI()

    @app.post(CHAT)
    async def chat(request: Request):
        body = await request.json()
        calls.append(body)
        await asyncio.sleep(body.get("delay", 0))
        text = f"answer {len(calls)}"
        finish = body.get("finish", "stop")
        if body.get("fail"):
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        if body.get("stream"):
            def event(payload) -> str:
                return f"data: {json.dumps(payload)}\n\n"

            async def events():
                yield event({"choices": [{"index": 0, "delta": {"content": text},
                                          "finish_reason": None}]})
                yield event({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
                yield event({"choices": [], "usage": {"completion_tokens": 2}})
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream",
                                     headers={"x-request-id": "r1"})
        return JSONResponse({"id": "c1", "choices": [{"index": 0, "finish_reason": finish,
                                                      "message": {"content": text}}],
                             "usage": {"completion_tokens": 2}},
                            headers={"x-request-id": "r1"})

    return app


class Harness:
    def __init__(self, tmp_path, share=False, semantic=None):
        self.calls: list = []
        store = KeyStore(tmp_path / "auth.sqlite3")
        self.key_a, _ = store.create("alice")
        self.key_b, _ = store.create("bob")
        self.cache = ResponseCache([MemoryBackend(1 << 20)], semantic=semantic)
        inner = CacheMiddleware(endpoint(self.calls), self.cache, "model-fp", share)
        self.app = AuthMiddleware(inner, store)

    def post(self, body, key=None, headers=None):
        return self.concurrently([body], key, headers)[0]

    def concurrently(self, bodies, key=None, headers=None):
        async def go():
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await asyncio.gather(*(client.post(CHAT, json=body, headers={
                    "authorization": f"Bearer {key or self.key_a}", **(headers or {})})
                    for body in bodies))
        return asyncio.run(go())


BODY = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0}


def test_repeat_is_a_hit_with_the_same_body_and_no_endpoint_call(tmp_path):
    h = Harness(tmp_path)
    first, second = h.post(BODY), h.post({**BODY, "user": "someone"})
    assert first.headers["x-forge-cache"] == "miss" and second.headers["x-forge-cache"] == "hit"
    assert second.headers["x-forge-cache-source"] == "memory"
    assert second.headers["x-request-id"] == "r1" and len(h.calls) == 1
    replay = second.json()
    assert replay["usage"].pop("cached") is True and replay == first.json()
    assert h.cache.stats.requests == {"miss": 1, "hit": 1}


def test_streams_are_replayed_and_cut_streams_not_stored(tmp_path):
    h = Harness(tmp_path)
    body = {**BODY, "stream": True}
    first, second = h.post(body), h.post(body)
    assert second.headers["x-forge-cache"] == "hit" and len(h.calls) == 1
    assert second.headers["content-type"].startswith("text/event-stream")
    assert second.text.replace(', "cached": true', "") == first.text
    aborted = {**body, "finish": "abort", "seed": 1}
    h.post(aborted)
    assert h.post(aborted).headers["x-forge-cache"] == "miss" and len(h.calls) == 3


def test_opt_outs_and_non_deterministic_requests_bypass(tmp_path):
    h = Harness(tmp_path)
    h.post(BODY)
    assert h.post({**BODY, "cache": False}).headers["x-forge-cache"] == "bypass"
    assert h.post(BODY, headers={"cache-control": "no-store"}).headers[
        "x-forge-cache"] == "bypass"
    fresh = h.post(BODY, headers={"cache-control": "no-cache"})  # skips lookup, stores anew
    assert fresh.headers["x-forge-cache"] == "miss"
    assert h.post(BODY).json()["choices"][0]["message"]["content"] == "answer 4"
    sampled = {**BODY, "temperature": 0.7}
    assert h.post(sampled).headers["x-forge-cache"] == "bypass"
    assert h.post(sampled).headers["x-forge-cache"] == "bypass" and len(h.calls) == 6
    bad = h.post({**BODY, "cache": "no"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "cache"


def test_failures_are_not_stored(tmp_path):
    h = Harness(tmp_path)
    for body in ({**BODY, "fail": True}, {**BODY, "finish": "abort"}):
        assert h.post(body).headers["x-forge-cache"] == "miss"
        assert h.post(body).headers["x-forge-cache"] == "miss"
    assert len(h.calls) == 4 and h.cache.stats.skipped == 4


def test_api_keys_are_isolated_unless_sharing_is_configured(tmp_path):
    h = Harness(tmp_path)
    h.post(BODY, key=h.key_a)
    assert h.post(BODY, key=h.key_b).headers["x-forge-cache"] == "miss"
    assert h.post(BODY, key=h.key_a).headers["x-forge-cache"] == "hit"
    assert h.post(BODY, key="fk_wrong").status_code == 401  # auth still answers first
    shared = Harness(tmp_path / "shared", share=True)
    shared.post(BODY, key=shared.key_a)
    assert shared.post(BODY, key=shared.key_b).headers["x-forge-cache"] == "hit"


def test_semantic_match_within_the_same_parameters(tmp_path):
    vectors = {"user: Hi": [1.0, 0.0], "user: Hi!": [0.99, 0.141], "user: Bye": [0.0, 1.0]}
    index = SemanticIndex(lambda t: np.asarray(vectors[t], dtype=np.float32), threshold=0.95)
    h = Harness(tmp_path, semantic=index)
    h.post(BODY)
    close = {**BODY, "messages": [{"role": "user", "content": "Hi!"}]}
    hit = h.post(close)
    assert hit.headers["x-forge-cache"] == "hit" and len(h.calls) == 1
    assert float(hit.headers["x-forge-cache-similarity"]) == pytest.approx(0.99, abs=1e-3)
    far = {**BODY, "messages": [{"role": "user", "content": "Bye"}]}
    assert h.post(far).headers["x-forge-cache"] == "miss"
    other_params = {**close, "max_tokens": 3}  # a different group: never matched across
    assert h.post(other_params).headers["x-forge-cache"] == "miss" and len(h.calls) == 3


def test_identical_requests_in_flight_are_coalesced_but_streams_are_not(tmp_path):
    h = Harness(tmp_path)
    slow = {**BODY, "delay": 0.3}
    answers = h.concurrently([slow] * 3)
    assert sorted(r.headers["x-forge-cache"] for r in answers) == ["hit", "hit", "miss"]
    assert len(h.calls) == 1 and h.cache.stats.coalesced == 2
    assert len({r.json()["choices"][0]["message"]["content"] for r in answers}) == 1
    failing = {**slow, "finish": "abort", "seed": 5}  # the leader's answer is not stored:
    answers = h.concurrently([failing] * 2)  # the follower generates its own
    assert [r.headers["x-forge-cache"] for r in answers] == ["miss", "miss"]
    assert len(h.calls) == 3
    streams = h.concurrently([{**slow, "stream": True, "seed": 9}] * 2)
    assert [r.headers["x-forge-cache"] for r in streams] == ["miss", "miss"]
