"""The Triton prefill kernel against the reference attention (Triton's interpreter on CPU):
ragged chunks of several sequences in one launch, chunked prefill (chunks starting mid-
sequence), GQA/MQA/MHA, sliding window, soft-capping, block sizes 1-16."""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from cuda_paged_cases import scattered_cache  # noqa: E402

from forge_kernel.engine.attention import grouped_attention as reference  # noqa: E402

triton_prefill = pytest.importorskip("forge_plugin_cuda.triton_prefill")


CASES = [
    # block_size, (start, n) per chunk, heads, kv_heads, dim, window, softcap, block_m, block_n
    (4, [(0, 7), (5, 3), (0, 1)], 4, 2, 16, None, None, 4, 8),
    (16, [(0, 21), (16, 9)], 4, 1, 32, None, None, 8, 16),
    (3, [(2, 10), (0, 5)], 6, 3, 8, 4, None, 4, 4),  # window hides whole key tiles
    (1, [(0, 6), (3, 4)], 2, 2, 24, None, 20.0, 4, 4),  # block size 1, dim not a power of 2
    (8, [(10, 12), (0, 17)], 8, 2, 16, 6, 5.0, 8, 8),  # window + soft-cap, chunked prefill
]


@pytest.mark.parametrize("block_size,chunks,heads,kv_heads,dim,window,softcap,bm,bn", CASES)
def test_prefill_matches_reference(block_size, chunks, heads, kv_heads, dim, window, softcap,
                                   bm, bn):
    gen = torch.Generator().manual_seed(block_size * 100 + len(chunks) + dim)
    totals = [s + n for s, n in chunks]
    k_cache, v_cache, tables, seqs = scattered_cache(totals, block_size, kv_heads, dim, gen)
    q_lens = [n for _, n in chunks]
    begins = [sum(q_lens[:c]) for c in range(len(chunks))]
    q = torch.randn(sum(q_lens), heads, dim, generator=gen)
    meta = triton_prefill.prefill_meta(begins, q_lens, [s for s, _ in chunks], dim, "cpu",
                                       block_m=bm)
    got = triton_prefill.paged_prefill(q, k_cache, v_cache, tables, meta, scale=dim ** -0.5,
                                       sliding_window=window, logit_softcap=softcap,
                                       block_n=bn)
    for c, (start, n) in enumerate(chunks):
        keys, values = seqs[c]
        want = reference(q[begins[c]:begins[c] + n], keys, values, start, scale=dim ** -0.5,
                         sliding_window=window, logit_softcap=softcap)
        torch.testing.assert_close(got[begins[c]:begins[c] + n], want, rtol=1e-5, atol=1e-5)


def test_tile_plan_covers_ragged_chunks():
    assert triton_prefill.tile_plan([5, 1, 8], 4) == ([0, 0, 1, 2, 2], [0, 4, 0, 0, 4])
    assert triton_prefill.tile_plan([], 4) == ([], [])


def test_prefill_leaves_rows_outside_chunks_alone():
    gen = torch.Generator().manual_seed(3)
    k_cache, v_cache, tables, _ = scattered_cache([4], 4, 1, 16, gen)
    q = torch.randn(6, 2, 16, generator=gen)
    out = torch.full_like(q, 7.0)
    meta = triton_prefill.prefill_meta([2], [4], [0], 16, "cpu", block_m=4)
    triton_prefill.paged_prefill(q, k_cache, v_cache, tables, meta, scale=0.25, out=out,
                                 block_n=4)
    assert torch.equal(out[:2], torch.full_like(out[:2], 7.0))
    assert not torch.equal(out[2:], torch.full_like(out[2:], 7.0))
