"""The paged KV cache end to end on the default model (Gemma 3 270M Q4_K_M GGUF, default int8
cpu weights): past the 512-token sliding window it yields the naive cache's greedy tokens (the
window is honoured in chunked prefill and in the decode kernel), a repeated prompt is served
from the prefix cache, ``n > 1`` forks the prompt copy-on-write, a tiny ``--num-blocks`` forces
preemption by recompute without changing any token, and abort frees every block.

One model is loaded, with the cpu backend's ``exact`` float32 weights: its default int8 weights
are not row-invariant (a step with >= 8 rows runs a bf16 GEMM), so a request recomputed after
preemption or batched differently could legitimately change a greedy token there. The other
engines (naive cache, tiny cache) share the model's weights.
"""

from __future__ import annotations

import dataclasses

import pytest
from engine_helpers import cpu_weights, drain, require

from forge_kernel.engine.builder import build_engine
from forge_kernel.engine.config import EngineConfig
from forge_kernel.engine.engine import LLMEngine
from forge_kernel.engine.types import SamplingParams
from forge_kernel.interfaces.kv_cache import KVCacheConfig
from forge_kernel.interfaces.scheduler import SchedulerConfig
from forge_kernel.plugins import get_host

require(("scheduler", "continuous", "forge-plugin-scheduler"),
        ("weight_loader", "gguf", "forge-plugin-gguf"),
        ("kv_cache", "paged", "forge-plugin-kv-paged"),
        ("kv_cache", "naive", "forge-plugin-kv-naive"))
registry = get_host().registry

MAX_LEN = 640
GREEDY = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)
TEXT = " ".join(f"Item {i}: the quick brown fox jumps over the lazy dog." for i in range(60))


@pytest.fixture(scope="module")
def paged() -> LLMEngine:
    with cpu_weights("exact"):
        return build_engine(EngineConfig(kv_cache="paged", threads=2, max_model_len=MAX_LEN,
                                         max_prefill_tokens=256))


def sibling(engine: LLMEngine, kv: str, **kv_config) -> LLMEngine:
    """Another engine on ``engine``'s model (no second load) with its own cache/scheduler."""
    spec = dataclasses.replace(engine.model.kv_cache_spec(), max_model_len=MAX_LEN)
    cache = registry.create("kv_cache", kv, spec, KVCacheConfig(**kv_config))
    sched = registry.create("scheduler", "continuous",
                            SchedulerConfig(max_prefill_tokens=256, max_model_len=MAX_LEN), cache)
    return LLMEngine(engine.model, engine.tokenizer, cache, sched, max_model_len=MAX_LEN)


@pytest.fixture(scope="module")
def long_prompt(paged) -> list[int]:
    ids = paged.tokenizer.encode(TEXT)[:530]
    assert len(ids) == 530
    return ids


def run(engine, prompt, params=GREEDY):
    deltas = list(engine.generate(prompt, params))
    return [t for d in deltas for t in d.token_ids], deltas[-1].usage


def assert_empty(engine):
    cache = engine.kv_cache
    assert cache.usage() == 0.0 and cache.free_tokens() == cache.capacity_tokens()
    assert engine.stats().num_running == 0 and engine.stats().num_waiting == 0


def test_past_the_sliding_window_paged_equals_naive(paged, long_prompt, monkeypatch):
    """530 prompt tokens in chunks of 256 (the third chunk crosses position 512) and 8 greedy
    tokens decoded at positions 530..537, where the local layers see only the last 512."""
    import forge_plugin_kv_paged.cache as paged_cache

    calls = []
    decode = paged_cache.paged_decode

    def spy(q, k, v, tables, lens, **kw):
        calls.append((kw["sliding_window"], int(lens.max())))
        return decode(q, k, v, tables, lens, **kw)

    monkeypatch.setattr(paged_cache, "paged_decode", spy)
    got, usage = run(paged, long_prompt)
    assert (512, 537) in calls and (None, 537) in calls  # local and global layers, in place
    want, _ = run(sibling(paged, "naive", memory_budget_bytes=64 << 20), long_prompt)
    assert got == want
    assert usage.cached_tokens == 0
    assert_empty(paged)


def test_repeated_prompt_hits_the_prefix_cache(paged, long_prompt, monkeypatch):
    first, _ = run(paged, long_prompt)  # cached by the previous test or now
    computed = []
    forward = paged.model.forward
    monkeypatch.setattr(paged.model, "forward",
                        lambda batch, kv: computed.append(len(batch.token_ids)) or
                        forward(batch, kv))
    again, usage = run(paged, long_prompt)
    assert usage.cached_tokens == 528  # 33 full blocks of 16; the last token is recomputed
    assert sum(computed) == (530 - 528) + GREEDY.max_tokens - 1
    assert again == first
    assert_empty(paged)


def test_n_choices_fork_copy_on_write_equal_independent_runs(paged, long_prompt, monkeypatch):
    """n=2 seeded: choice i equals an n=1 request seeded ``seed + i`` (each choice's keys and
    values are its own after copy-on-write); the prompt is computed once."""
    params = SamplingParams(temperature=0.8, top_k=40, n=2, seed=7, max_tokens=6,
                            ignore_eos=True)
    run(paged, long_prompt)  # the prompt is in the prefix cache: only the fork path remains
    computed = []
    forward = paged.model.forward
    monkeypatch.setattr(paged.model, "forward",
                        lambda batch, kv: computed.append(len(batch.token_ids)) or
                        forward(batch, kv))
    paged.add_request("n2", long_prompt, params)
    choices = drain(paged)["n2"]
    assert sum(computed) == (530 - 528) + 2 * (params.max_tokens - 1)
    monkeypatch.undo()
    for i in range(2):
        alone, _ = run(paged, long_prompt, dataclasses.replace(params, n=1, seed=7 + i))
        assert choices[i] == alone
    assert_empty(paged)


def test_tiny_num_blocks_preempts_without_changing_tokens(paged):
    prompts = [paged.tokenizer.encode(t) for t in
               ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a land"]]
    params = dataclasses.replace(GREEDY, max_tokens=10)
    alone = [run(paged, p, params)[0] for p in prompts]
    small = sibling(paged, "paged", block_size=8, num_blocks=5)  # 40 tokens for 16 + 17 + 19
    for i, p in enumerate(prompts):
        small.add_request(f"r{i}", p, params)
    out = drain(small)
    assert [out[f"r{i}"][0] for i in range(len(prompts))] == alone
    assert small.stats().num_preemptions > 0
    assert_empty(small)


def test_abort_at_any_moment_frees_every_block(paged, long_prompt):
    engine = sibling(paged, "paged", block_size=16, num_blocks=32)
    ids = paged.tokenizer.encode("Once upon a time")
    engine.add_request("decoding", ids, dataclasses.replace(GREEDY, max_tokens=50))
    engine.add_request("forked", ids, SamplingParams(temperature=1.0, n=3, max_tokens=50))
    engine.step()
    engine.step()
    engine.add_request("prefilling", long_prompt[:400], GREEDY)  # 2 chunks of 256
    engine.add_request("waiting", long_prompt[:300], GREEDY)  # no room yet
    engine.step()
    assert engine.stats().num_waiting >= 1 and engine.kv_cache.usage() > 0.5
    for rid in ("prefilling", "forked", "waiting", "decoding"):
        events = engine.abort(rid)
        assert events and all(d.finish_reason == "abort" for _, d in events)
    assert not engine.has_unfinished()
    assert_empty(engine)
    assert engine.kv_cache.pool.num_in_use() == 0
