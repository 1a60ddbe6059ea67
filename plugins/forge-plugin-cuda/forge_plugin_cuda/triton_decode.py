"""Triton paged-attention decode: one query token per sequence, keys/values read in place
from the paged cache's blocks through each sequence's block table.

Layout (the ``paged`` cache's, per layer): ``k_cache``/``v_cache [num_blocks, block_size, KV,
D]``; a sequence's token at position ``p`` lives in block ``table[p // block_size]`` at row
``p % block_size``. One program per (sequence, kv head) serves every query head of that kv
head (GQA: query head ``h`` reads kv head ``h // groups``), so each key/value row is loaded
once per group. Online softmax in float32 over tiles of ``BLOCK_N`` positions; a tile may span
several blocks (any block size works, not only powers of two), each row's block looked up from
the table.

Semantics are the reference's (``forge_plugin_kv_naive``): the query at position ``n - 1``
sees positions ``<= n - 1``; ``sliding_window=w`` keeps only ``> n - 1 - w``;
``logit_softcap=c`` maps scores to ``c * tanh(s / c)`` before the softmax.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from forge_plugin_cuda.triton_common import check_paged, index_tensor, key_tile, load_rows


@triton.jit
def _decode_kernel(q_ptr, k_ptr, v_ptr, table_ptr, lens_ptr, out_ptr,
                   scale, softcap, window,
                   sq_b, sq_h, sk_n, sk_s, sk_h, sv_n, sv_s, sv_h, st_b, so_b, so_h,
                   GROUPS: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_SIZE: tl.constexpr,
                   BLOCK_G: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
                   USE_SOFTCAP: tl.constexpr):
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, BLOCK_D)
    g_ok = g < GROUPS
    d_ok = d < HEAD_DIM
    heads = kvh * GROUPS + g
    q = tl.load(q_ptr + b * sq_b + heads[:, None] * sq_h + d[None, :],
                mask=g_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
    n = tl.load(lens_ptr + b)
    lo = tl.where(window > 0, tl.maximum(n - window, 0), 0)
    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    for start in range(lo, n, BLOCK_N):
        pos, p_ok, blk, row, kv_mask, k = key_tile(table_ptr + b * st_b, k_ptr, start, n, kvh, d,
                                                    d_ok, sk_n, sk_s, sk_h, BLOCK_N, BLOCK_SIZE)
        k = k.to(tl.float32)  # [BLOCK_N, BLOCK_D]
        # Broadcast-and-reduce rather than tl.dot: one query row per head, no MMA tile to fill.
        s = tl.sum(q[:, None, :] * k[None, :, :], axis=2) * scale  # [BLOCK_G, BLOCK_N]
        if USE_SOFTCAP:
            # tanh through sigmoid: tanh(x) = 2 * sigmoid(2x) - 1 (portable to the interpreter).
            s = softcap * (2.0 * tl.sigmoid(2.0 * s / softcap) - 1.0)
        s = tl.where(p_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))  # finite: every tile has a valid position
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = load_rows(v_ptr, blk, row, kvh, d, kv_mask, sv_n, sv_s, sv_h).to(tl.float32)
        acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * v[None, :, :], axis=1)
        m_i = m_new
    out = acc / l_i[:, None]
    tl.store(out_ptr + b * so_b + heads[:, None] * so_h + d[None, :],
             out.to(out_ptr.dtype.element_ty), mask=g_ok[:, None] & d_ok[None, :])


def paged_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                 block_tables: torch.Tensor, seq_lens: torch.Tensor, *, scale: float,
                 sliding_window: int | None = None, logit_softcap: float | None = None,
                 block_n: int | None = None) -> torch.Tensor:
    """Decode attention for ``B`` sequences.

    ``q [B, H, D]``; ``k_cache``/``v_cache [num_blocks, block_size, KV, D]`` (last dim
    contiguous); ``block_tables [B, M]`` int32/int64 (entries past a sequence's blocks are never
    read); ``seq_lens [B]`` int32/int64, each ``>= 1``, counting the query's own position, whose
    key/value must already be stored. All on one device. Returns ``[B, H, D]`` in ``q``'s
    dtype. ``block_n`` (power of two) is the positions per tile; default 32.
    """
    batch, heads, dim = q.shape
    kv_heads = k_cache.shape[2]
    check_paged("paged_decode", q, k_cache, v_cache)
    q = q.contiguous()
    out = torch.empty_like(q)
    if batch == 0:
        return out
    tables, lens = index_tensor(block_tables), index_tensor(seq_lens)
    groups = heads // kv_heads
    _decode_kernel[(batch, kv_heads)](
        q, k_cache, v_cache, tables, lens, out,
        float(scale), float(logit_softcap or 0.0), int(sliding_window or 0),
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), tables.stride(0),
        out.stride(0), out.stride(1),
        GROUPS=groups, HEAD_DIM=dim, BLOCK_SIZE=k_cache.shape[1],
        BLOCK_G=triton.next_power_of_2(groups), BLOCK_D=triton.next_power_of_2(dim),
        BLOCK_N=block_n or 32, USE_SOFTCAP=logit_softcap is not None,
    )
    return out
