"""The decode attention kernels against the reference: random shapes, sliding windows, soft-cap,
scattered block tables whose unused slots hold NaN; split-K rows bit-identical whatever the
batch and the thread count; the compiled KV write; clear errors; numba imported only as the
fallback."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from forge_plugin_kv_paged import attention
from forge_plugin_kv_paged.attention import kernel_for, paged_decode, write_rows

from forge_kernel.testing.conformance.kv_cache import reference_attention

compiled = pytest.mark.skipif(attention._paged_attn is None, reason="C extension not built")


def case(seed, batch, heads, kv, dim, bs, longest):
    """A cache with every slot NaN except the blocks the rows use, scattered over the pool."""
    g = torch.Generator().manual_seed(seed)
    width = -(-longest // bs) + 1  # one table entry more than any row needs (garbage id)
    num_blocks = batch * width + 5
    k = torch.full((num_blocks, bs, kv, dim), float("nan"))
    v = torch.full((num_blocks, bs, kv, dim), float("nan"))
    perm = torch.randperm(num_blocks, generator=g).numpy().astype(np.int32)
    tables = perm[:batch * width].reshape(batch, width).copy()
    lens = torch.randint(1, longest + 1, (batch,), generator=g).numpy().astype(np.int32)
    lens[0] = longest
    for b in range(batch):
        used = tables[b, :-(-int(lens[b]) // bs)]
        k[used] = torch.randn(len(used), bs, kv, dim, generator=g)
        v[used] = torch.randn(len(used), bs, kv, dim, generator=g)
        tables[b, len(used):] = 10 ** 6  # past the row's length: never read
    q = torch.randn(batch, heads, dim, generator=g)
    return q, k, v, tables, lens


def reference(q, k, v, tables, lens, b, **kw):
    n = int(lens[b])
    rows = torch.from_numpy(tables[b, :-(-n // k.shape[1])]).long()
    keys = k[rows].reshape(-1, *k.shape[2:])[:n]
    values = v[rows].reshape(-1, *v.shape[2:])[:n]
    return reference_attention(q[b:b + 1], keys, values, n - 1, **kw)[0]


@pytest.mark.parametrize("seed,batch,heads,kv,dim,bs,longest,window,softcap", [
    (0, 1, 4, 1, 256, 16, 600, 512, None),  # Gemma 3 270M: local layer past its window
    (1, 1, 4, 1, 256, 16, 600, None, None),  # and its global layer
    (2, 5, 8, 2, 64, 4, 300, None, 5.0),
    (3, 3, 10, 1, 48, 8, 200, 33, None),  # 10 query heads per kv head (> 8: sliced), D % 32 = 16
    (4, 4, 6, 3, 16, 1, 140, 7, 2.0),
    (5, 7, 4, 4, 128, 16, 129, 128, None),  # one position past a chunk boundary
])
def test_decode_matches_reference(seed, batch, heads, kv, dim, bs, longest, window, softcap):
    q, k, v, tables, lens = case(seed, batch, heads, kv, dim, bs, longest)
    kw = dict(scale=dim ** -0.5, sliding_window=window, logit_softcap=softcap)
    out = paged_decode(q, k, v, tables, lens, **kw)
    assert torch.isfinite(out).all()  # no NaN slot was read
    for b in range(batch):
        ref = reference(q, k, v, tables, lens, b, **kw)
        assert (out[b].double() - ref).abs().max() < 2e-5


@compiled
@pytest.mark.parametrize("window,softcap", [(None, None), (300, None), (None, 4.0)])
def test_split_rows_do_not_depend_on_batch_or_threads(window, softcap):
    """Long rows are split over chunks and threads; the merge order is fixed by the row alone."""
    q, k, v, tables, lens = case(7, 6, 8, 2, 64, 16, 900)
    kw = dict(scale=0.125, sliding_window=window, logit_softcap=softcap)
    serial = paged_decode(q, k, v, tables, lens, parallel=False, **kw)
    threads = torch.get_num_threads()
    try:
        for n in (2, 3):
            torch.set_num_threads(n)
            assert torch.equal(paged_decode(q, k, v, tables, lens, parallel=True, **kw), serial)
    finally:
        torch.set_num_threads(threads)
    for b in range(6):
        alone = paged_decode(q[b:b + 1], k, v, tables[b:b + 1], lens[b:b + 1], **kw)
        assert torch.equal(alone[0], serial[b])
    order = [3, 0, 5]  # another batch, another order
    mixed = paged_decode(q[order], k, v, tables[order], lens[order], parallel=True, **kw)
    assert torch.equal(mixed, serial[order])


@compiled
def test_compiled_and_numba_kernels_agree():
    from forge_plugin_kv_paged.attention_numba import paged_decode_numba

    q, k, v, tables, lens = case(8, 4, 8, 2, 64, 4, 250)
    c = paged_decode(q, k, v, tables, lens, scale=0.125, sliding_window=100, logit_softcap=3.0)
    nb = paged_decode_numba(q, k, v, tables, lens, scale=0.125, window=100, softcap=3.0,
                            parallel=False)
    torch.testing.assert_close(c, nb, rtol=1e-5, atol=1e-6)


def test_numba_fallback_for_other_head_dims():
    """head_dim 24 is not a multiple of 16: the numba kernel serves it, same semantics."""
    assert kernel_for(24) == "numba"
    q, k, v, tables, lens = case(9, 3, 4, 2, 24, 4, 40)
    out = paged_decode(q, k, v, tables, lens, scale=0.2, sliding_window=9, logit_softcap=None)
    for b in range(3):
        ref = reference(q, k, v, tables, lens, b, scale=0.2, sliding_window=9)
        assert (out[b].double() - ref).abs().max() < 2e-5


@compiled
def test_bad_tables_and_lengths_are_clear_errors():
    q, k, v, tables, lens = case(10, 2, 4, 1, 32, 4, 20)
    kw = dict(scale=0.1, sliding_window=None, logit_softcap=None)
    bad = tables.copy()
    bad[0, 0] = k.shape[0]
    with pytest.raises(ValueError, match="reads block"):
        paged_decode(q, k, v, bad, lens, **kw)
    with pytest.raises(ValueError, match="length 0"):
        paged_decode(q, k, v, tables, np.array([0, 3], dtype=np.int32), **kw)
    with pytest.raises(ValueError, match="length"):
        paged_decode(q, k, v, tables, np.array([tables.shape[1] * 4 + 1, 3], dtype=np.int32),
                     **kw)
    with pytest.raises(TypeError, match="int32"):
        paged_decode(q, k, v, tables.astype(np.int64), lens, **kw)
    with pytest.raises(TypeError, match="float32"):
        paged_decode(q.double(), k, v, tables, lens, **kw)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_write_rows_matches_index_copy(dtype):
    g = torch.Generator().manual_seed(11)
    cache_k = torch.zeros(6, 4, 2, 16, dtype=dtype)
    cache_v = torch.zeros(6, 4, 2, 16, dtype=dtype)
    k, v = torch.randn(5, 2, 16, generator=g), torch.randn(5, 2, 16, generator=g)
    slots = torch.tensor([3, 22, 0, 9, 17])
    write_rows(cache_k, cache_v, k, v, slots)
    want_k = torch.zeros(24, 2, 16, dtype=dtype).index_copy_(0, slots, k.to(dtype))
    want_v = torch.zeros(24, 2, 16, dtype=dtype).index_copy_(0, slots, v.to(dtype))
    assert torch.equal(cache_k.view(24, 2, 16), want_k)
    assert torch.equal(cache_v.view(24, 2, 16), want_v)


@compiled
def test_write_rows_rejects_slots_outside_the_cache():
    cache = torch.zeros(2, 4, 1, 16)
    x = torch.zeros(1, 1, 16)
    with pytest.raises(ValueError, match="slot 8"):
        write_rows(cache, cache.clone(), x, x, torch.tensor([8]))


@compiled
def test_numba_is_not_imported_with_the_compiled_kernel():
    """numba costs ~65 MB of resident memory: the cache and a decode step must not pull it in."""
    code = ("import sys, numpy as np, torch\n"
            "import forge_plugin_kv_paged.cache\n"
            "from forge_plugin_kv_paged.attention import paged_decode\n"
            "k = torch.randn(2, 4, 1, 16)\n"
            "paged_decode(torch.randn(1, 2, 16), k, k, np.zeros((1, 2), np.int32),\n"
            "             np.array([5], np.int32), scale=1.0, sliding_window=None,\n"
            "             logit_softcap=None)\n"
            "print('numba' in sys.modules)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"
