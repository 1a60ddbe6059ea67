"""Shared by the server tests: a real ``forge serve`` with the cache on, the openai SDK, and
the engine's token counters read from /metrics."""

from __future__ import annotations

import time

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

from forge_kernel.testing.server import ForgeServer

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


def sdk(server: ForgeServer, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=120)


def chat(client, **extra):
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=extra.pop("messages", MESSAGES), max_tokens=4, temperature=0,
        **extra)
    return raw.headers, raw.http_response.json()
