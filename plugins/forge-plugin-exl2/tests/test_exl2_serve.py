"""An EXL2 directory served by a real ``forge serve --model DIR`` (openai SDK) and answered by
``forge run DIR``: greedy output equals the in-process greedy run of the same loaded model.

Tiny random Gemma 3 (exact float32 weights on both sides, ``FORGE_CPU_WEIGHTS=exact``), so the
token sequence is deterministic. The default model's EXL2 file is served the same way in
benchmarks/bench_exl2.py (``--serve``), which takes minutes to quantize.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from forge_kernel.modeling import build_causal_lm, open_model_source
from forge_kernel.plugins import get_host
from forge_kernel.testing.conformance.model_architecture import greedy, naive_cache_factory
from forge_kernel.testing.server import start_server

PROMPT = "hello world, the quick brown"
ENV = {"FORGE_CPU_WEIGHTS": "exact"}


@pytest.fixture(scope="module")
def exl2_dir(tiny_exl2):
    return tiny_exl2("gemma3", 8.0)


@pytest.fixture(scope="module")
def expected(exl2_dir):
    source = open_model_source(exl2_dir)
    backend = get_host().registry.create("backend", "cpu", threads=1, precision="exact")
    model = build_causal_lm(source, backend)
    ids = source.tokenizer.encode(PROMPT)
    out = greedy(model, naive_cache_factory(model)(), ids, 6)
    eos = source.tokenizer.eos_ids
    out = out[:next((i for i, t in enumerate(out) if t in eos), len(out))]
    return source.tokenizer.decode(out)


def test_forge_serve_answers_with_the_exl2_model(exl2_dir, expected, tmp_path):
    import openai

    server = start_server(["--model", str(exl2_dir), "--threads", "1", "--max-model-len",
                           "128"], tmp_path / "home", env=ENV)
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0,
                               timeout=120)
        models = [m.id for m in client.models.list().data]
        assert len(models) == 1
        reply = client.completions.create(model=models[0], prompt=PROMPT, max_tokens=6,
                                          temperature=0)
        assert reply.choices[0].text == expected
        assert reply.usage.completion_tokens >= 1
        chat = client.chat.completions.create(
            model=models[0], messages=[{"role": "user", "content": "hello"}], max_tokens=4,
            temperature=0)
        assert chat.choices[0].finish_reason in ("length", "stop")
    finally:
        code = server.stop()
    assert code == 0, server.log()[-2000:]


def test_forge_run_answers_with_the_exl2_model(exl2_dir, expected, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "forge_kernel", "run", str(exl2_dir), PROMPT, "--raw",
         "--max-tokens", "6", "--temperature", "0", "--threads", "1"],
        capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, **ENV, "FORGE_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == expected.strip()
