"""The kernel's reference attention (``forge_kernel.engine.attention``) against an obvious float64
loop: GQA groups, causal mask, sliding window, soft-capping, keys starting after position 0 (a
paged cache gathers whole blocks from the window's first one), and query blocking."""

from __future__ import annotations

import pytest
import torch

import forge_kernel.engine.attention as attention
from forge_kernel.testing.conformance.kv_cache import reference_attention


def qkv(n_keys: int, n_queries: int, heads: int, kv_heads: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n_queries, heads, 16, generator=g)
    k = torch.randn(n_keys, kv_heads, 16, generator=g)
    v = torch.randn(n_keys, kv_heads, 16, generator=g)
    return q, k, v


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 1), (6, 2)])
@pytest.mark.parametrize("window,softcap", [(None, None), (5, None), (None, 2.0), (7, 3.0)])
@pytest.mark.parametrize("n", [1, 6])
def test_matches_the_float64_reference(heads, kv_heads, window, softcap, n):
    q, k, v = qkv(20, n, heads, kv_heads)
    first = 20 - n
    kw = dict(scale=0.3, sliding_window=window, logit_softcap=softcap)
    out = attention.grouped_attention(q, k, v, first, **kw)
    ref = reference_attention(q, k, v, first, **kw)
    assert out.shape == q.shape
    assert (out.double() - ref).abs().max() < 2e-5


@pytest.mark.parametrize("window", [None, 6])
def test_keys_starting_later_equal_the_full_history(window):
    """``key_pos0``: the keys passed begin at that position (a window's first block)."""
    q, k, v = qkv(24, 5, 4, 2, seed=1)
    full = attention.grouped_attention(q, k, v, 19, scale=0.5, sliding_window=window)
    lo = 8 if window else 0
    part = attention.grouped_attention(q, k[lo:], v[lo:], 19, key_pos0=lo, scale=0.5,
                                       sliding_window=window)
    torch.testing.assert_close(part, full, rtol=1e-6, atol=1e-6)


def test_query_blocks_do_not_change_the_result(monkeypatch):
    q, k, v = qkv(11, 11, 4, 2, seed=2)
    whole = attention.grouped_attention(q, k, v, 0, scale=0.4, sliding_window=5)
    monkeypatch.setattr(attention, "MAX_SCORES", 4 * 11 * 3)  # 3 queries per block
    blocked = attention.grouped_attention(q, k, v, 0, scale=0.4, sliding_window=5)
    torch.testing.assert_close(blocked, whole, rtol=1e-6, atol=1e-6)


def test_output_dtype_follows_the_values():
    q, k, v = qkv(8, 8, 4, 2, seed=3)
    out = attention.grouped_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), 0, scale=0.25)
    assert out.dtype == torch.bfloat16
    ref = reference_attention(q, k, v, 0, scale=0.25)
    assert (out.double() - ref).abs().max() < 3e-2
