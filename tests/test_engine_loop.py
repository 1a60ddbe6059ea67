"""The engine loop on a tiny random Llama (transformers) with the real cpu backend, the naive and
the paged KV cache and the ``continuous`` scheduler: greedy equals transformers, batch invariance
among 16 concurrent requests, seeds, preemption, abort, stop strings while streaming, n > 1
(forked, copy-on-write), prefix caching, 64 concurrent requests in a small KV budget, errors.

The model's tensors come straight from the transformers state dict (no loader needed) and a
piece tokenizer names each id ``<i>``, so stop strings can span tokens. Loader and real-model
runs are in ``test_engine_e2e.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from engine_helpers import drain

from forge_kernel.engine.async_engine import AsyncEngine
from forge_kernel.engine.engine import LLMEngine, RequestFailed
from forge_kernel.engine.types import InvalidRequest, SamplingParams
from forge_kernel.interfaces.kv_cache import KVCacheConfig
from forge_kernel.interfaces.loader import ModelConfig, ModelSource, WeightTensor
from forge_kernel.interfaces.scheduler import SchedulerConfig
from forge_kernel.modeling import build_causal_lm
from forge_kernel.plugins import get_host
from forge_kernel.testing.tokenizer import PieceTokenizer

VOCAB, EOS = 300, 2
registry = get_host().registry
if "continuous" not in registry.names("scheduler"):
    pytest.skip("the continuous scheduler (forge-plugin-scheduler) is not installed",
                allow_module_level=True)

_RENAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
            "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
            "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
            "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}




def _source(hf) -> ModelSource:
    """Canonical (GGUF-named) float32 tensors of a transformers Llama."""
    tensors = {}
    for name, value in hf.state_dict().items():
        parts = name.split(".")
        if name == "model.embed_tokens.weight":
            canon = "token_embd.weight"
        elif name == "model.norm.weight":
            canon = "output_norm.weight"
        elif name == "lm_head.weight":
            canon = "output.weight"
        else:
            canon = f"blk.{parts[2]}.{_RENAMES['.'.join(parts[3:-1])]}.{parts[-1]}"
        data = value.detach().float().numpy().copy()
        tensors[canon] = WeightTensor(canon, tuple(data.shape), "F32", data,
                                      lambda w: torch.from_numpy(np.array(w.data)))
    c = hf.config
    config = ModelConfig(architecture="llama", vocab_size=VOCAB, hidden_size=c.hidden_size,
                         intermediate_size=c.intermediate_size, num_layers=c.num_hidden_layers,
                         num_heads=c.num_attention_heads, num_kv_heads=c.num_key_value_heads,
                         head_dim=c.hidden_size // c.num_attention_heads,
                         context_length=c.max_position_embeddings, rms_norm_eps=c.rms_norm_eps,
                         rope_theta=10000.0)
    return ModelSource(Path("<tiny llama>"), "hf-memory", config, PieceTokenizer(), tensors)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=96,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=128,
                                   tie_word_embeddings=False, attn_implementation="eager")
    hf = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    source = _source(hf)
    backend = registry.create("backend", "cpu", threads=1, precision="exact")
    return hf, build_causal_lm(source, backend), source.tokenizer


KVS = [name for name in ("naive", "paged") if name in registry.names("kv_cache")]


def make_engine(tiny, num_blocks=None, max_prefill_tokens=32, max_batch_size=64,
                max_model_len=128, kv="naive", **kv_config) -> LLMEngine:
    _, model, tokenizer = tiny
    spec = dataclasses.replace(model.kv_cache_spec(), max_model_len=max_model_len)
    if "num_blocks" not in kv_config and "memory_budget_bytes" not in kv_config:
        kv_config["num_blocks"] = num_blocks or 64
    kv = registry.create("kv_cache", kv, spec, KVCacheConfig(block_size=16, **kv_config))
    sched = registry.create("scheduler", "continuous",
                            SchedulerConfig(max_batch_size=max_batch_size,
                                            max_prefill_tokens=max_prefill_tokens,
                                            max_model_len=max_model_len), kv)
    return LLMEngine(model, tokenizer, kv, sched, max_model_len=max_model_len, model_name="tiny")


rng = random.Random(0)
PROMPTS = [[1] + [rng.randrange(3, VOCAB) for _ in range(rng.randrange(1, 40))]
           for _ in range(16)]
GREEDY = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)


def tokens(engine, prompt, params=GREEDY) -> list[int]:
    return [t for d in engine.generate(prompt, params) for t in d.token_ids]


@pytest.mark.parametrize("kv", KVS)
def test_greedy_matches_transformers(tiny, kv):
    hf = tiny[0]
    engine = make_engine(tiny, kv=kv)
    for prompt in PROMPTS[:4]:
        ref = hf.generate(torch.tensor([prompt]), max_new_tokens=8, min_new_tokens=8,
                          do_sample=False)[0, len(prompt):].tolist()
        assert tokens(engine, prompt) == ref
    assert engine.kv_cache.usage() == 0.0


async def _concurrent(engine, params_list, prompts=PROMPTS):
    aeng = AsyncEngine(engine)
    aeng.start()

    async def one(i, prompt, params):
        return [t async for d in aeng.generate(f"r{i}", prompt, params) for t in d.token_ids]

    try:
        return await asyncio.gather(*(one(i, p, s) for i, (p, s)
                                      in enumerate(zip(prompts, params_list, strict=True))))
    finally:
        await aeng.shutdown()


@pytest.mark.parametrize("kv", KVS)
@pytest.mark.parametrize("num_blocks", [None, 6])
def test_batch_invariance_16_concurrent_and_preemption(tiny, num_blocks, kv):
    """Alone vs among 16 concurrent requests; with 6 blocks of 16 tokens the scheduler must
    preempt (recompute) and the greedy tokens still may not change."""
    alone = [tokens(make_engine(tiny, kv=kv), p) for p in PROMPTS]
    engine = make_engine(tiny, num_blocks=num_blocks, kv=kv)
    together = asyncio.run(_concurrent(engine, [GREEDY] * 16))
    assert together == alone
    stats = engine.stats()
    assert stats.kv_usage == 0.0 and stats.kv_free_tokens == stats.kv_capacity_tokens
    if num_blocks:
        assert stats.num_preemptions > 0


def test_seed_reproducible_whatever_the_batch(tiny):
    seeded = SamplingParams(temperature=1.0, top_p=0.9, max_tokens=8, seed=1234, ignore_eos=True)
    alone = tokens(make_engine(tiny), PROMPTS[3], seeded)
    others = [SamplingParams(temperature=1.0, max_tokens=8, ignore_eos=True)] * 16
    others[3] = seeded
    together = asyncio.run(_concurrent(make_engine(tiny), others))
    assert together[3] == alone
    other_seed = dataclasses.replace(seeded, seed=99)
    assert tokens(make_engine(tiny), PROMPTS[3], other_seed) != alone


def test_stop_string_spanning_tokens_never_streamed(tiny):
    engine = make_engine(tiny)
    prompt = PROMPTS[0]
    full = tokens(engine, prompt)
    # A stop string made of the end of token 3's text and the start of token 4's.
    stop = f"{full[3]}><{full[4]}"
    deltas = list(engine.generate(prompt, dataclasses.replace(GREEDY, stop=[stop])))
    text = "".join(d.text for d in deltas)
    assert text == "".join(f"<{t}>" for t in full[:3]) + f"<{str(full[3])[:0]}"
    assert all(stop not in d.text for d in deltas)
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].usage.completion_tokens == 5 and deltas[-1].usage.prompt_tokens == len(prompt)


@pytest.mark.parametrize("kv", KVS)
def test_abort_frees_kv_and_reports_abort(tiny, kv):
    engine = make_engine(tiny, kv=kv)

    async def main():
        aeng = AsyncEngine(engine)
        aeng.start()
        agen = aeng.generate("long", PROMPTS[1], SamplingParams(temperature=0.0, ignore_eos=True))
        first = await agen.__anext__()
        assert first.token_ids
        await agen.aclose()  # the consumer goes away: the request is aborted
        for _ in range(200):
            if engine.stats().num_requests == 0:
                break
            await asyncio.sleep(0.01)
        # an explicit abort of a streaming request ends its stream with "abort"
        stream = aeng.generate("other", PROMPTS[2], SamplingParams(temperature=0.0,
                                                                   ignore_eos=True))
        await stream.__anext__()
        await aeng.abort("other")
        reasons = [d.finish_reason async for d in stream]
        await aeng.shutdown()
        return reasons

    reasons = asyncio.run(main())
    assert reasons[-1] == "abort"
    assert engine.kv_cache.usage() == 0.0
    assert engine.kv_cache.free_tokens() == engine.kv_cache.capacity_tokens()
    assert engine.stats().num_running == 0 and engine.stats().num_waiting == 0


@pytest.mark.parametrize("kv", KVS)
def test_n_choices_logprobs_and_length(tiny, kv):
    engine = make_engine(tiny, max_model_len=48, kv=kv)
    params = SamplingParams(temperature=1.0, n=3, seed=5, max_tokens=4, logprobs=2,
                            ignore_eos=True)
    deltas = list(engine.generate(PROMPTS[0], params))
    by_index = {i: [d for d in deltas if d.index == i] for i in range(3)}
    for ds in by_index.values():
        assert sum(len(d.token_ids) for d in ds) == 4 and ds[-1].finish_reason == "length"
        assert all(len(d.logprobs) == 1 and len(d.logprobs[0].top) == 2 for d in ds)
        assert all(d.logprobs[0].logprob <= 0.0 for d in ds)
    assert deltas[-1].usage.completion_tokens == 12
    # no max_tokens: generation runs until the context (48) is full
    out = list(engine.generate([1, 5, 6], SamplingParams(temperature=0.0, ignore_eos=True)))
    assert sum(len(d.token_ids) for d in out) == 45 and out[-1].finish_reason == "length"


def test_invalid_requests_are_rejected_before_queueing(tiny):
    engine = make_engine(tiny, max_model_len=64)
    with pytest.raises(InvalidRequest) as info:
        engine.add_request("x", [1] * 60, SamplingParams(max_tokens=10), prompt_param="messages")
    assert info.value.code == "context_length_exceeded" and info.value.param == "messages"
    assert "maximum context length is 64 tokens" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        engine.add_request("y", [1, VOCAB + 5], SamplingParams())
    assert info.value.param == "prompt"

    async def main():
        aeng = AsyncEngine(engine)
        aeng.start()
        with pytest.raises(InvalidRequest):
            async for _ in aeng.generate("z", [1, 2], SamplingParams(top_p=2.0)):
                pass
        with pytest.raises(InvalidRequest) as info:  # endpoints validate before the headers
            aeng.validate([1, 2], SamplingParams(min_tokens=-1), "messages")
        assert info.value.param == "min_tokens"
        aeng.validate([1, 2], SamplingParams())  # forwarded to the engine: a valid one passes
        await aeng.shutdown()

    asyncio.run(main())
    assert not engine.has_unfinished()


def test_request_larger_than_cache_fails_cleanly(tiny):
    engine = make_engine(tiny, num_blocks=2, max_model_len=128)  # 32 tokens of cache
    with pytest.raises((RequestFailed, InvalidRequest)):
        tokens(engine, [1] * 60, SamplingParams(temperature=0.0, max_tokens=4))
    assert tokens(engine, [1, 4, 5], SamplingParams(temperature=0.0, max_tokens=4,
                                                    ignore_eos=True))


def test_embeddings_do_not_depend_on_batch_and_free_kv(tiny):
    engine = make_engine(tiny)
    a, b = engine.embed([PROMPTS[0], PROMPTS[1]])
    assert len(a) == 64 and engine.embed([PROMPTS[1]])[0] == pytest.approx(b, abs=1e-5)
    assert engine.kv_cache.usage() == 0.0


needs_paged = pytest.mark.skipif("paged" not in KVS,
                                 reason="forge-plugin-kv-paged is not installed")


def count_computed(monkeypatch, engine) -> list[int]:
    """Count the tokens the model computes (one entry per forward pass)."""
    counts: list[int] = []
    forward = engine.model.forward

    def counting(batch, kv_cache):
        counts.append(len(batch.token_ids))
        return forward(batch, kv_cache)

    monkeypatch.setattr(engine.model, "forward", counting)
    return counts


@needs_paged
def test_n_choices_fork_the_prompt_copy_on_write(tiny, monkeypatch):
    """n=3: the prompt is computed once; choices 1-2 are forked from choice 0 (same blocks,
    the partial last one included), sample their first token from its logits, and get a
    private copy of the partial block when they first write. Seeded choices equal those of
    the naive cache, whose fork copies the keys/values."""
    prompt = [1] + [3 + (i * 37) % 290 for i in range(20)]  # 21 tokens: 1 full block + 5
    params = SamplingParams(temperature=1.0, n=3, seed=11, max_tokens=6, ignore_eos=True)
    engine = make_engine(tiny, kv="paged")
    counts = count_computed(monkeypatch, engine)
    kv = engine.kv_cache
    engine.add_request("fork", prompt, params)
    first = engine.step()
    assert sorted(d.index for _, d in first) == [0, 1, 2]  # one prompt pass, three tokens
    seq_ids = [s.seq.seq_id for s in engine._requests["fork"].seqs]
    tables = [kv.block_table(i) for i in seq_ids]
    assert tables[0] == tables[1] == tables[2]
    full = len(prompt) // 16
    free_before = kv.free_tokens()
    out = {d.index: list(d.token_ids) for _, d in first}
    for _, delta in engine.step():  # everyone writes position len(prompt)
        out[delta.index] += delta.token_ids
    after = [kv.block_table(i) for i in seq_ids]
    assert all(t[:full] == tables[0][:full] for t in after)  # full blocks stay shared
    assert len({t[full] for t in after}) == 3  # the partial block was copied on write
    assert kv.free_tokens() == free_before - 2 * 16  # two copies, the last writer kept it
    for c, toks in drain(engine)["fork"].items():
        out[c] += toks
    assert sum(counts) == len(prompt) + 3 * (params.max_tokens - 1)  # no prompt recompute
    assert len({tuple(t) for t in out.values()}) > 1  # the choices did diverge
    naive = make_engine(tiny, kv="naive")
    naive.add_request("fork", prompt, params)
    assert drain(naive)["fork"] == out
    assert kv.usage() == 0.0 and naive.kv_cache.usage() == 0.0


@needs_paged
def test_prefix_cache_skips_recomputing_a_repeated_prompt(tiny, monkeypatch):
    engine = make_engine(tiny, kv="paged")
    counts = count_computed(monkeypatch, engine)
    prompt = [1] + [3 + (i * 53) % 290 for i in range(44)]  # 45 tokens: 2 full blocks + 13
    first = list(engine.generate(prompt, GREEDY))
    computed_first = sum(counts)
    counts.clear()
    second = list(engine.generate(prompt, GREEDY))
    cached = (len(prompt) - 1) // 16 * 16
    assert first[-1].usage.cached_tokens == 0
    assert second[-1].usage.cached_tokens == cached
    assert sum(counts) == computed_first - cached
    assert [t for d in second for t in d.token_ids] == [t for d in first for t in d.token_ids]


PROMPTS_64 = [[1] + [rng.randrange(3, VOCAB) for _ in range(rng.randrange(1, 40))]
              for _ in range(64)]


@pytest.mark.parametrize("kv", KVS)
def test_64_concurrent_requests_in_a_small_kv_budget(tiny, kv):
    """64 requests at once in a cache of ~8 blocks of 16 tokens (sized by a memory budget):
    all complete with the tokens they get alone (preemption by recompute, never an error or a
    truncation); the cache never holds more than its budget."""
    params = SamplingParams(temperature=0.0, max_tokens=6, ignore_eos=True)
    big = make_engine(tiny, kv=kv)
    alone = [tokens(big, p, params) for p in PROMPTS_64]
    per_token = big.kv_cache.spec.bytes_per_token
    budget = 8 * 16 * per_token + per_token // 2
    engine = make_engine(tiny, kv=kv, memory_budget_bytes=budget)
    cache = engine.kv_cache
    capacity = cache.capacity_tokens()
    assert capacity * per_token <= budget
    for i, prompt in enumerate(PROMPTS_64):
        engine.add_request(f"r{i}", prompt, params)
    out: dict[str, list[int]] = {}
    peak = 0
    while engine.has_unfinished():
        for rid, delta in engine.step():
            assert not isinstance(delta, RequestFailed), delta
            out.setdefault(rid, []).extend(delta.token_ids)
        assert capacity - cache.free_tokens() <= capacity
        peak = max(peak, capacity - cache.free_tokens())
        if kv == "paged":  # storage is allocated once, inside the budget
            assert (cache.k.numel() + cache.v.numel()) * cache.k.element_size() <= budget
    assert [out[f"r{i}"] for i in range(64)] == alone
    stats = engine.stats()
    assert stats.num_preemptions > 0 and stats.num_requests_finished == 64
    assert peak > capacity // 2
    assert cache.usage() == 0.0 and cache.free_tokens() == capacity
