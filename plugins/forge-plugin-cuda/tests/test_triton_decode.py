"""The Triton decode kernel against the reference attention, on the CPU through Triton's
interpreter (set before triton is imported)."""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from cuda_paged_cases import scattered_cache  # noqa: E402

from forge_kernel.engine.attention import grouped_attention as reference  # noqa: E402

triton_decode = pytest.importorskip("forge_plugin_cuda.triton_decode")


CASES = [
    # block_size, lens, heads, kv_heads, dim, window, softcap
    (16, [1, 17, 40], 4, 2, 16, None, None),
    (4, [5, 9, 1, 30], 8, 2, 32, None, None),
    (8, [33, 7], 6, 6, 16, 5, None),  # MHA, window shorter than the contexts
    (3, [10, 2, 25], 4, 1, 8, 8, None),  # block size not a power of two, MQA, dim 8
    (16, [20, 64], 2, 1, 24, None, 30.0),  # head dim not a power of two, soft-capping
    (2, [11, 3], 6, 2, 16, 4, 5.0),  # window and soft-capping together, GQA ratio 3
]


@pytest.mark.parametrize("block_size,lens,heads,kv_heads,dim,window,softcap", CASES)
def test_decode_matches_reference(block_size, lens, heads, kv_heads, dim, window, softcap):
    gen = torch.Generator().manual_seed(block_size * 1000 + sum(lens))
    k_cache, v_cache, tables, seqs = scattered_cache(lens, block_size, kv_heads, dim, gen)
    q = torch.randn(len(lens), heads, dim, generator=gen)
    scale = dim ** -0.5
    got = triton_decode.paged_decode(q, k_cache, v_cache, tables, torch.tensor(lens),
                                     scale=scale, sliding_window=window, logit_softcap=softcap,
                                     block_n=8)
    for b, (keys, values) in enumerate(seqs):
        want = reference(q[b:b + 1], keys, values, lens[b] - 1, scale=scale,
                         sliding_window=window, logit_softcap=softcap)
        torch.testing.assert_close(got[b:b + 1], want, rtol=1e-5, atol=1e-5)


def test_decode_bf16_cache():
    gen = torch.Generator().manual_seed(7)
    lens = [13, 4]
    k_cache, v_cache, tables, seqs = scattered_cache(lens, 4, 2, 16, gen, dtype=torch.bfloat16)
    q = torch.randn(2, 4, 16, generator=gen).to(torch.bfloat16)
    got = triton_decode.paged_decode(q, k_cache, v_cache, tables, torch.tensor(lens),
                                     scale=0.25)
    assert got.dtype == torch.bfloat16
    for b, (keys, values) in enumerate(seqs):
        want = reference(q[b:b + 1].float(), keys.float(), values.float(), lens[b] - 1,
                         scale=0.25)
        torch.testing.assert_close(got[b:b + 1].float(), want, rtol=2e-2, atol=2e-2)


def test_decode_rejects_bad_head_counts():
    q = torch.zeros(1, 3, 8)
    cache = torch.zeros(2, 4, 2, 8)
    with pytest.raises(ValueError, match="3 query heads not a multiple of 2"):
        triton_decode.paged_decode(q, cache, cache, torch.zeros(1, 1, dtype=torch.int32),
                                   torch.ones(1, dtype=torch.int32), scale=1.0)
