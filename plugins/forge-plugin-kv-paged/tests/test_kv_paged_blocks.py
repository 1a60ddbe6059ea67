"""Paged-cache specifics: block granularity, copy-on-write fork, prefix caching and eviction,
the decode kernel and the non-float32 fallback."""

from __future__ import annotations

import pytest
import torch

from forge_kernel.errors import KVCacheFull
from forge_kernel.interfaces.kv_cache import KVCacheConfig, KVCacheSpec
from forge_kernel.plugins import get_host
from forge_kernel.testing.conformance.kv_cache import _Driver, reference_attention

BS = 4


def spec(**kw) -> KVCacheSpec:
    base = dict(num_layers=2, num_kv_heads=2, head_dim=8, dtype=torch.float32, max_model_len=256)
    base.update(kw)
    return KVCacheSpec(**base)


def make(num_blocks: int = 16, prefix: bool = True, **kw):
    return get_host().registry.create(
        "kv_cache", "paged", spec(**kw),
        KVCacheConfig(block_size=BS, num_blocks=num_blocks, enable_prefix_caching=prefix))


def test_block_granular_accounting():
    cache = make(num_blocks=4)
    cache.allocate(1, 1)
    assert cache.free_tokens() == 3 * BS  # a whole block is taken
    cache.allocate(1, BS)
    assert len(cache.block_table(1)) == 1
    cache.allocate(1, BS + 1)
    assert len(cache.block_table(1)) == 2
    assert cache.usage() == 0.5
    cache.free(1)
    assert cache.free_tokens() == 4 * BS and cache.block_table(1) == []


def test_memory_budget_sizes_blocks():
    s = spec()
    cache = get_host().registry.create(
        "kv_cache", "paged", s, KVCacheConfig(block_size=BS, memory_budget_bytes=10 * BS *
                                              s.bytes_per_token + 7))
    assert cache.num_blocks == 10 and cache.capacity_tokens() == 10 * BS


def test_bad_block_size_is_a_clear_error():
    with pytest.raises(ValueError, match="block-size"):
        get_host().registry.create("kv_cache", "paged", spec(), KVCacheConfig(block_size=0))


def test_fork_shares_full_blocks_and_copies_partial_on_write():
    d = _Driver(make(), spec(), heads=4)
    d.step([(1, 6)], atol=2e-5)  # blocks: [full, partial(2 of 4)]
    d.fork(1, 2)
    cache = d.cache
    assert cache.block_table(1) == cache.block_table(2)
    free_before = cache.free_tokens()
    assert cache.can_allocate(2, 7)
    d.step([(2, 1)], atol=2e-5)  # child writes position 6 -> private copy of block 1
    t1, t2 = cache.block_table(1), cache.block_table(2)
    assert t1[0] == t2[0] and t1[1] != t2[1]
    assert cache.free_tokens() == free_before - BS
    d.step([(1, 1), (2, 1)], atol=2e-5)  # parent now writes its own (no longer shared) block
    assert cache.block_table(1)[1] == t1[1]
    cache.free(1)
    d.step([(2, 3)], atol=2e-5)  # the shared full block survived the parent's free


def test_fork_cow_counts_in_can_allocate():
    d = _Driver(make(num_blocks=2), spec(), heads=4)
    d.step([(1, 6)], atol=2e-5)
    d.fork(1, 2)
    assert not d.cache.can_allocate(2, 7)  # needs a copy of the shared partial block
    with pytest.raises(KVCacheFull):
        d.cache.allocate(2, 7)


def test_prefix_hit_reuses_blocks_and_attention_stays_exact():
    d = _Driver(make(), spec(), heads=4)
    d.step([(1, 10)], atol=2e-5)  # two full blocks published by commit
    prompt = d.tokens[1] + [5, 6]
    cached = d.cache.match_prefix(2, prompt)
    assert cached == 2 * BS
    assert d.cache.block_table(2) == d.cache.block_table(1)[:2]
    # The new sequence computes the rest on top of the shared blocks.
    d.tokens[2] = prompt[:cached]
    d.keys[2] = [k[:cached].clone() for k in d.keys[1]]
    d.values[2] = [v[:cached].clone() for v in d.values[1]]
    d.step([(2, 4)], atol=2e-5)
    d.step([(2, 1), (1, 1)], atol=2e-5)


def test_prefix_match_leaves_one_token_and_needs_full_blocks():
    d = _Driver(make(), spec(), heads=4)
    d.step([(1, 8)], atol=2e-5)
    assert d.cache.match_prefix(2, d.tokens[1]) == BS  # 8 tokens: last block kept for logits
    assert d.cache.match_prefix(3, d.tokens[1][:3]) == 0  # no full block
    assert d.cache.match_prefix(4, [999] + d.tokens[1][1:]) == 0  # first token differs
    assert d.cache.match_prefix(2, d.tokens[1]) == 0  # already has blocks


def test_freed_prefix_blocks_are_kept_then_evicted_lru():
    cache = make(num_blocks=4)
    d = _Driver(cache, spec(), heads=4)
    d.step([(1, 9)], atol=2e-5)  # 3 blocks, 2 full and published
    tokens = list(d.tokens[1])
    cache.free(1)
    assert cache.free_tokens() == 4 * BS  # evictable blocks count as free
    assert cache.usage() == 0.0
    assert cache.match_prefix(2, tokens) == 2 * BS  # still there after free
    cache.free(2)
    # Taking all 4 blocks evicts the cached ones; the prefix is gone afterwards.
    cache.allocate(3, 4 * BS)
    cache.free(3)
    assert cache.match_prefix(4, tokens) == 0


def test_lru_evicts_tail_of_prefix_first():
    cache = make(num_blocks=4)
    d = _Driver(cache, spec(), heads=4)
    d.step([(1, 12)], atol=2e-5)  # 3 full blocks
    tokens = list(d.tokens[1]) + [1]
    cache.free(1)
    cache.allocate(2, 2 * BS)  # 1 free block + 1 evicted (the prefix's last)
    assert cache.match_prefix(3, tokens) == 2 * BS


def test_identical_prompts_computed_twice_keep_one_canonical_block():
    d = _Driver(make(), spec(), heads=4)
    d.step([(1, 4), (2, 4)], atol=2e-5)
    d.tokens[2] = list(d.tokens[1])  # pretend both had the same ids: publish both
    d.cache.commit(2, d.tokens[2], 4)
    assert d.cache.match_prefix(3, d.tokens[1] + [0]) == BS
    assert d.cache.block_table(3) == d.cache.block_table(1)[:1]


def test_prefix_caching_off():
    d = _Driver(make(prefix=False), spec(), heads=4)
    d.step([(1, 9)], atol=2e-5)
    assert d.cache.match_prefix(2, d.tokens[1]) == 0


def test_decode_kernel_larger_shapes():
    """Many sequences of different lengths in one decode step, GQA 8:2, head_dim 64."""
    s = spec(num_layers=1, head_dim=64)
    cache = get_host().registry.create("kv_cache", "paged", s,
                                       KVCacheConfig(block_size=16, num_blocks=64))
    d = _Driver(cache, s, heads=8)
    d.step([(i, 3 + 17 * i) for i in range(6)], atol=2e-5)
    for window in (None, 20):
        d.step([(i, 1) for i in range(6)], atol=2e-5, sliding_window=window, scale=0.125)


def test_bf16_falls_back_to_gather_path():
    s = spec(dtype=torch.bfloat16)
    cache = get_host().registry.create("kv_cache", "paged", s,
                                       KVCacheConfig(block_size=BS, num_blocks=16))
    from forge_kernel.interfaces.batch import ForwardBatch, SequenceChunk

    g = torch.Generator().manual_seed(1)
    q = torch.randn(5, 4, 8, generator=g).bfloat16()
    k = torch.randn(5, 2, 8, generator=g).bfloat16()
    v = torch.randn(5, 2, 8, generator=g).bfloat16()
    cache.allocate(1, 5)
    batch = ForwardBatch(torch.zeros(5, dtype=torch.long), torch.arange(5),
                         [SequenceChunk(1, 0, 5)])
    cache.begin_step(batch)
    out = cache.attend(0, q, k, v, batch, scale=0.3)
    ref = reference_attention(q.float(), k.float(), v.float(), 0, scale=0.3)
    assert out.dtype == torch.bfloat16
    assert (out.double() - ref).abs().max() < 3e-2


def test_attend_needs_begin_step_for_its_batch():
    from forge_kernel.interfaces.batch import ForwardBatch, SequenceChunk

    cache = make(num_blocks=4)
    cache.allocate(1, 3)
    x = torch.zeros(3, 2, 8)
    batch = ForwardBatch(torch.zeros(3, dtype=torch.long), torch.arange(3),
                         [SequenceChunk(1, 0, 3)])
    with pytest.raises(RuntimeError, match="begin_step"):
        cache.attend(0, torch.zeros(3, 4, 8), x, x, batch, scale=1.0)
    cache.begin_step(batch)
    assert cache.attend(0, torch.zeros(3, 4, 8), x, x, batch, scale=1.0).shape == (3, 4, 8)


@pytest.mark.parametrize("window,softcap", [(None, None), (7, None), (None, 5.0), (40, 3.0)])
def test_decode_kernel_serial_and_parallel_bit_identical(window, softcap):
    """The threaded and the single-thread kernel (picked by the amount of work) give the same
    bits per row, whatever the batch: batch invariance does not depend on the dispatch."""
    import numpy as np
    from forge_plugin_kv_paged.attention import paged_decode

    g = torch.Generator().manual_seed(3)
    num_blocks, bs, kv, heads, dim = 80, 4, 2, 8, 64
    k = torch.randn(num_blocks, bs, kv, dim, generator=g)
    v = torch.randn(num_blocks, bs, kv, dim, generator=g)
    lens = np.array([1, 5, 33, 60, 17], dtype=np.int32)
    perm = torch.randperm(num_blocks, generator=g).numpy().astype(np.int32)
    tables = perm[:5 * 15].reshape(5, 15).copy()
    q = torch.randn(5, heads, dim, generator=g)
    kw = dict(scale=0.125, sliding_window=window, logit_softcap=softcap)
    par = paged_decode(q, k, v, tables, lens, parallel=True, **kw)
    ser = paged_decode(q, k, v, tables, lens, parallel=False, **kw)
    assert torch.equal(par, ser)
    for b in range(5):  # alone == in the batch, and equal to the float64 reference
        alone = paged_decode(q[b:b + 1], k, v, tables[b:b + 1], lens[b:b + 1], **kw)
        assert torch.equal(alone[0], par[b])
        n = int(lens[b])
        rows = torch.from_numpy(tables[b]).long()
        keys = k[rows].reshape(-1, kv, dim)[:n]
        values = v[rows].reshape(-1, kv, dim)[:n]
        ref = reference_attention(q[b:b + 1], keys, values, n - 1, **kw)
        assert (par[b].double() - ref[0]).abs().max() < 2e-5


def test_unwritten_slots_are_never_read():
    """Storage is uninitialized (torch.empty): fill it with NaN and every path (chunked
    prefill with a window, decode, fork + copy-on-write, prefix hit) must stay exact."""
    cache = make(num_blocks=24)
    cache.k.fill_(float("nan"))
    cache.v.fill_(float("nan"))
    d = _Driver(cache, spec(), heads=4)
    d.step([(1, 7), (2, 3)], atol=2e-5)
    d.step([(1, 6), (2, 1)], atol=2e-5, sliding_window=5)
    d.step([(1, 1), (2, 1)], atol=2e-5, sliding_window=5)
    d.fork(1, 3)
    d.step([(3, 1), (1, 2)], atol=2e-5)
    prompt = d.tokens[1][:9] + [7, 8]
    cached = cache.match_prefix(4, prompt)
    assert cached == 2 * BS
    d.tokens[4] = prompt[:cached]
    d.keys[4] = [k[:cached].clone() for k in d.keys[1]]
    d.values[4] = [v[:cached].clone() for v in d.values[1]]
    d.step([(4, 3), (3, 1)], atol=2e-5)
    d.step([(4, 1)], atol=2e-5, sliding_window=3)


@pytest.mark.parametrize("window", [None, 5])
def test_speculative_chunk_attends_like_decode_steps_bit_for_bit(window):
    """A chunk with logits at every token (a decode row plus its speculative drafts) runs each
    token through the decode kernel at its own length: exactly what one decode step per token
    computes, so greedy verification matches plain decoding bit for bit."""
    from forge_kernel.interfaces.batch import ForwardBatch, SequenceChunk

    gen = torch.Generator().manual_seed(3)
    T, H = 12, 4
    q, k, v = (torch.randn(T, n, 8, generator=gen) for n in (H, 2, 2))

    def run(pieces):
        cache, outs, start = make(num_blocks=8), [], 0
        for n, logits in pieces:
            cache.allocate(1, start + n)
            batch = ForwardBatch(torch.zeros(n, dtype=torch.long), torch.arange(start, start + n),
                                 [SequenceChunk(1, start, n, True, num_logits=logits)])
            cache.begin_step(batch)
            outs.append(cache.attend(0, q[start:start + n], k[start:start + n],
                                     v[start:start + n], batch, scale=0.3,
                                     sliding_window=window))
            start += n
        return torch.cat(outs)

    decode = run([(7, 1)] + [(1, 1)] * 5)
    spec = run([(7, 1), (5, 5)])
    prefill = run([(7, 1), (5, 1)])  # an ordinary chunk takes the prefill path
    assert torch.equal(spec, decode)
    torch.testing.assert_close(prefill, decode, rtol=1e-5, atol=1e-5)
