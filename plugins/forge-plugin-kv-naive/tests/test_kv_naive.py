"""The naive KV cache: attention semantics (causal, sliding window, softcap, GQA) against a
per-query loop written straight from the definitions, chunked prefill, batching, accounting."""

from __future__ import annotations

import math

import pytest
import torch

from forge_kernel.errors import KVCacheFull
from forge_kernel.interfaces.batch import ForwardBatch, SequenceChunk
from forge_kernel.interfaces.kv_cache import KVCacheConfig, KVCacheSpec
from forge_kernel.plugins import get_host

H, KV, D = 4, 2, 8


def make_cache(layers: int = 2, budget_tokens: int = 1024, max_len: int = 512):
    spec = KVCacheSpec(num_layers=layers, num_kv_heads=KV, head_dim=D, dtype=torch.float32,
                       max_model_len=max_len)
    config = KVCacheConfig(memory_budget_bytes=budget_tokens * spec.bytes_per_token)
    return get_host().registry.create("kv_cache", "naive", spec, config)


def reference(q, k, v, scale, window=None, softcap=None):
    """Attention of a whole sequence (queries at 0..n-1), one query and one head at a time."""
    n = q.shape[0]
    out = torch.zeros_like(q)
    for i in range(n):
        for h in range(H):
            kh = h // (H // KV)
            scores = []
            for j in range(n):
                visible = j <= i and (window is None or i - j < window)
                s = float(q[i, h] @ k[j, kh]) * scale
                if softcap is not None:
                    s = softcap * math.tanh(s / softcap)
                scores.append(s if visible else -math.inf)
            p = torch.softmax(torch.tensor(scores, dtype=torch.float64), 0).float()
            out[i, h] = p @ v[:, kh]
    return out


def batch_of(spans: list[tuple[int, int, int]]) -> ForwardBatch:
    """``spans``: (seq_id, start_pos, num_tokens) per chunk."""
    chunks = [SequenceChunk(s, p, n) for s, p, n in spans]
    positions = torch.cat([torch.arange(p, p + n) for _, p, n in spans])
    return ForwardBatch(torch.zeros(len(positions), dtype=torch.long), positions, chunks)


def qkv(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, H, D, generator=g), torch.randn(n, KV, D, generator=g),
            torch.randn(n, KV, D, generator=g))


@pytest.mark.parametrize("window,softcap", [(None, None), (3, None), (None, 2.0), (4, 1.5)])
def test_whole_prompt_matches_reference(window, softcap):
    q, k, v = qkv(9, seed=1)
    cache = make_cache()
    cache.allocate(7, 9)
    out = cache.attend(0, q, k, v, batch_of([(7, 0, 9)]), scale=0.3, sliding_window=window,
                       logit_softcap=softcap)
    torch.testing.assert_close(out, reference(q, k, v, 0.3, window, softcap),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("window,softcap", [(None, None), (3, 2.0)])
def test_chunked_prefill_and_decode_equal_one_pass(window, softcap):
    q, k, v = qkv(10, seed=2)
    cache = make_cache()
    cache.allocate(0, 10)
    pieces = []
    for start, n in [(0, 4), (4, 3), (7, 1), (8, 1), (9, 1)]:  # two chunks, then decode
        sl = slice(start, start + n)
        pieces.append(cache.attend(1, q[sl], k[sl], v[sl], batch_of([(0, start, n)]), scale=0.5,
                                   sliding_window=window, logit_softcap=softcap))
    torch.testing.assert_close(torch.cat(pieces), reference(q, k, v, 0.5, window, softcap),
                               rtol=1e-5, atol=1e-5)


def test_batch_of_two_sequences_keeps_them_apart():
    qa, ka, va = qkv(5, seed=3)
    qb, kb, vb = qkv(6, seed=4)
    cache = make_cache()
    cache.allocate(1, 6)
    cache.allocate(2, 6)
    # Sequence 1 prefills 4 tokens alone; then one step decodes seq 1 and prefills all of seq 2.
    cache.attend(0, qa[:4], ka[:4], va[:4], batch_of([(1, 0, 4)]), scale=0.4)
    q = torch.cat([qa[4:], qb])
    k = torch.cat([ka[4:], kb])
    v = torch.cat([va[4:], vb])
    out = cache.attend(0, q, k, v, batch_of([(1, 4, 1), (2, 0, 6)]), scale=0.4)
    torch.testing.assert_close(out[:1], reference(qa, ka, va, 0.4)[4:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[1:], reference(qb, kb, vb, 0.4), rtol=1e-5, atol=1e-5)


def test_layers_are_independent():
    q, k, v = qkv(3, seed=5)
    cache = make_cache()
    cache.allocate(0, 3)
    first = cache.attend(0, q, k, v, batch_of([(0, 0, 3)]), scale=1.0)
    cache.attend(1, q, k * 2, v * 3, batch_of([(0, 0, 3)]), scale=1.0)
    again = cache.attend(0, q, k, v, batch_of([(0, 0, 3)]), scale=1.0)  # rewrite same rows
    torch.testing.assert_close(first, again)


def test_accounting_and_limits():
    cache = make_cache(budget_tokens=100, max_len=64)
    assert cache.capacity_tokens() == 100 and cache.free_tokens() == 100
    cache.allocate(0, 40)
    cache.allocate(0, 30)  # never shrinks
    assert cache.free_tokens() == 60 and cache.usage() == pytest.approx(0.4)
    assert cache.can_allocate(1, 60) and not cache.can_allocate(1, 61)
    assert not cache.can_allocate(0, 65)  # over max_model_len
    with pytest.raises(KVCacheFull, match="more tokens"):
        cache.allocate(1, 61)
    with pytest.raises(KVCacheFull, match="max_model_len"):
        cache.allocate(0, 65)
    cache.free(0)
    cache.free(0)  # idempotent
    assert cache.free_tokens() == 100 and cache.usage() == 0.0


def test_attend_beyond_allocation_is_a_clear_error():
    q, k, v = qkv(4, seed=6)
    cache = make_cache()
    cache.allocate(3, 2)
    with pytest.raises(KVCacheFull, match="sequence 3.*only 2 tokens"):
        cache.attend(0, q, k, v, batch_of([(3, 0, 4)]), scale=1.0)


def test_fork_copies_history():
    q, k, v = qkv(6, seed=7)
    cache = make_cache()
    cache.allocate(0, 6)
    cache.attend(0, q[:5], k[:5], v[:5], batch_of([(0, 0, 5)]), scale=0.7)
    cache.fork(0, 1)
    assert cache.free_tokens() == cache.capacity_tokens() - 12
    out = cache.attend(0, q[5:], k[5:], v[5:], batch_of([(1, 5, 1)]), scale=0.7)
    torch.testing.assert_close(out, reference(q, k, v, 0.7)[5:], rtol=1e-5, atol=1e-5)


def test_growth_preserves_earlier_tokens():
    q, k, v = qkv(40, seed=8)
    cache = make_cache()
    outs = []
    for pos in range(40):  # one token at a time: the buffer regrows several times
        cache.allocate(0, pos + 1)
        sl = slice(pos, pos + 1)
        outs.append(cache.attend(0, q[sl], k[sl], v[sl], batch_of([(0, pos, 1)]), scale=0.2,
                                 sliding_window=16))
    torch.testing.assert_close(torch.cat(outs), reference(q, k, v, 0.2, window=16),
                               rtol=1e-5, atol=1e-5)
    # Growth is by doubling, only when needed (not on every allocate call).
    assert cache._seqs[0].k.shape[1] == 64


def test_query_blocks_give_the_same_result(monkeypatch):
    """Long chunks are split into query blocks to bound memory; blocks must not change results."""
    import forge_kernel.engine.attention as naive

    q, k, v = qkv(11, seed=9)
    cache = make_cache()
    cache.allocate(0, 11)
    monkeypatch.setattr(naive, "MAX_SCORES", H * 11 * 3)  # 3 queries per block
    out = cache.attend(0, q, k, v, batch_of([(0, 0, 11)]), scale=0.4, sliding_window=5,
                       logit_softcap=3.0)
    torch.testing.assert_close(out, reference(q, k, v, 0.4, 5, 3.0), rtol=1e-5, atol=1e-5)
