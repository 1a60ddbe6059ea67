"""The default model with the default (int8) cpu weights under concurrency, through
:class:`AsyncEngine`: batch invariance among 16 concurrent requests, seeded sampling, stop
strings while streaming, and the KV cache empty afterwards."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from engine_helpers import concurrent, tokens

from forge_kernel.engine.builder import build_engine
from forge_kernel.engine.config import EngineConfig
from forge_kernel.engine.types import SamplingParams
from forge_kernel.plugins import get_host

registry = get_host().registry
for kind, name, dist in [("scheduler", "continuous", "forge-plugin-scheduler"),
                         ("weight_loader", "gguf", "forge-plugin-gguf")]:
    if name not in registry.names(kind):
        pytest.skip(f"{dist} is not installed", allow_module_level=True)
KV = "paged" if "paged" in registry.names("kv_cache") else "naive"
GREEDY = SamplingParams(temperature=0.0, max_tokens=3, ignore_eos=True)
PROMPTS = ["The capital of France is", "def fibonacci(n):", "1, 2, 3, 4,", "Hello",
           "Water boils at", "The quick brown fox", "Once upon a time", "import numpy as"]


@pytest.fixture(scope="module")
def gemma():
    return build_engine(EngineConfig(kv_cache=KV, threads=2, max_model_len=256,
                                     max_prefill_tokens=128))


def test_gemma_16_concurrent_greedy_batch_invariance(gemma):
    prompts = [gemma.tokenizer.encode(p) for p in PROMPTS * 2]
    alone = [tokens(gemma, p, GREEDY) for p in prompts[:8]]
    together = asyncio.run(concurrent(gemma, prompts, [GREEDY] * 16))
    assert together[:8] == alone and together[8:] == alone
    assert gemma.kv_cache.usage() == 0.0
    assert gemma.kv_cache.free_tokens() == gemma.kv_cache.capacity_tokens()


def test_gemma_stop_string_never_streamed(gemma):
    ids = gemma.tokenizer.encode(PROMPTS[6])
    full_deltas = list(gemma.generate(ids, dataclasses.replace(GREEDY, max_tokens=8)))
    full = "".join(d.text for d in full_deltas)
    pieces = [d.text for d in full_deltas if d.text]
    # a stop string spanning the boundary between two streamed pieces
    stop = pieces[1][-2:] + pieces[2][:2]
    deltas = list(gemma.generate(ids, dataclasses.replace(GREEDY, max_tokens=8, stop=[stop])))
    text = "".join(d.text for d in deltas)
    assert text == full[:full.index(stop)]
    assert deltas[-1].finish_reason == "stop"


def test_gemma_seed_same_text_whatever_the_batch(gemma):
    # forge-plugin-cpu runs every row count through one row-invariant kernel, so a seeded
    # request samples from the same logits alone or batched.
    ids = gemma.tokenizer.encode(PROMPTS[6])
    seeded = SamplingParams(temperature=0.9, top_k=40, max_tokens=5, seed=3, ignore_eos=True)
    first = tokens(gemma, ids, seeded)
    others = [dataclasses.replace(seeded, seed=None) for _ in range(4)]
    others[2] = seeded
    assert asyncio.run(concurrent(gemma, [ids] * 4, others))[2] == first
