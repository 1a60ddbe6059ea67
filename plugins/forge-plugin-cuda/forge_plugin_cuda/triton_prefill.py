"""Triton paged-attention prefill: chunks of several query tokens (whole prompts or chunked-
prefill slices, of any number of sequences in one launch) over each sequence's cached plus new
keys, read in place from the paged blocks through its block table.

One program per (query tile of ``BLOCK_M`` rows of one chunk, query head). The host lists the
tiles (``tile_chunk``, ``tile_q0``) so ragged chunk lengths need no padding of the queries.
Keys are walked in tiles of ``BLOCK_N`` positions from the first one any query of the tile can
see (``sliding_window``) to the tile's last query; scores are ``tl.dot`` products (tensor
cores on the GPU), softmax is online in float32 with fully masked rows guarded (a window can
hide a whole key tile from some queries).

Semantics are the reference's (``forge_plugin_kv_naive``): query at position ``p`` sees
keys ``<= p``, with ``sliding_window=w`` only ``> p - w``, scores soft-capped before masking.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from forge_plugin_cuda.triton_common import check_paged, index_tensor, key_tile, load_rows


@triton.jit
def _prefill_kernel(q_ptr, k_ptr, v_ptr, out_ptr, table_ptr, tile_chunk_ptr, tile_q0_ptr,
                    qbegin_ptr, qlen_ptr, start_ptr, scale, softcap, window,
                    sq_t, sq_h, sk_n, sk_s, sk_h, sv_n, sv_s, sv_h, st_c, so_t, so_h,
                    GROUPS: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_SIZE: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                    USE_SOFTCAP: tl.constexpr, PRECISION: tl.constexpr):
    tile = tl.program_id(0)
    h = tl.program_id(1)
    kvh = h // GROUPS
    c = tl.load(tile_chunk_ptr + tile)
    q0 = tl.load(tile_q0_ptr + tile)
    qbegin = tl.load(qbegin_ptr + c)
    n = tl.load(qlen_ptr + c)
    start = tl.load(start_ptr + c)
    m = q0 + tl.arange(0, BLOCK_M)
    m_ok = m < n
    d = tl.arange(0, BLOCK_D)
    d_ok = d < HEAD_DIM
    rows = (qbegin + m).to(tl.int64)
    q = tl.load(q_ptr + rows[:, None] * sq_t + h * sq_h + d[None, :],
                mask=m_ok[:, None] & d_ok[None, :], other=0.0)
    qpos = start + m
    stop = start + tl.minimum(q0 + BLOCK_M, n)  # one past the tile's last query position
    lo = tl.where(window > 0, tl.maximum(start + q0 - window + 1, 0), 0)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for kstart in range(lo, stop, BLOCK_N):
        kpos, k_ok, blk, krow, kv_mask, k = key_tile(table_ptr + c * st_c, k_ptr, kstart, stop,
                                                      kvh, d, d_ok, sk_n, sk_s, sk_h, BLOCK_N,
                                                      BLOCK_SIZE)  # k: [BLOCK_N, BLOCK_D]
        s = tl.dot(q, tl.trans(k.to(q.dtype)), input_precision=PRECISION) * scale  # [M, N]
        if USE_SOFTCAP:
            s = softcap * (2.0 * tl.sigmoid(2.0 * s / softcap) - 1.0)  # c * tanh(s / c)
        visible = (kpos[None, :] <= qpos[:, None]) & k_ok[None, :]
        visible = visible & ((window <= 0) | (qpos[:, None] - kpos[None, :] < window))
        s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        # Rows that have seen no visible key yet keep a -inf maximum: exponentiate against 0
        # instead, so they contribute exact zeros rather than NaNs.
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m_i - m_safe)
        p = tl.exp(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = load_rows(v_ptr, blk, krow, kvh, d, kv_mask, sv_n, sv_s, sv_h)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(out_ptr + rows[:, None] * so_t + h * so_h + d[None, :],
             out.to(out_ptr.dtype.element_ty), mask=m_ok[:, None] & d_ok[None, :])


def tile_plan(q_lens: list[int], block_m: int) -> tuple[list[int], list[int]]:
    """``(tile_chunk, tile_q0)``: every ``block_m``-row query tile of every chunk."""
    chunks, starts = [], []
    for c, n in enumerate(q_lens):
        for q0 in range(0, n, block_m):
            chunks.append(c)
            starts.append(q0)
    return chunks, starts


def default_tiles(head_dim: int) -> tuple[int, int]:
    """``(BLOCK_M, BLOCK_N)``: smaller tiles for wide heads keep the tile in registers."""
    if head_dim <= 64:
        return 64, 64
    if head_dim <= 128:
        return 64, 32
    return 32, 32


@dataclass(slots=True)
class PrefillMeta:
    """Per-step launch metadata, on the device (built once per step, shared by all layers)."""

    tile_chunk: torch.Tensor  # [tiles] int32
    tile_q0: torch.Tensor  # [tiles] int32
    q_begin: torch.Tensor  # [C] int32 first row of each chunk in the flat batch
    q_len: torch.Tensor  # [C] int32
    start: torch.Tensor  # [C] int32 position of each chunk's first query
    block_m: int
    num_tiles: int


def prefill_meta(q_begins: list[int], q_lens: list[int], start_pos: list[int], head_dim: int,
                 device: str | torch.device, block_m: int | None = None) -> PrefillMeta:
    """Metadata for :func:`paged_prefill` in one host-to-device copy."""
    if not len(q_lens) == len(q_begins) == len(start_pos):
        raise ValueError("paged_prefill: one q_begin, q_len and start_pos per chunk")
    bm = block_m or default_tiles(head_dim)[0]
    chunks, q0s = tile_plan(list(q_lens), bm)
    c, t = len(q_lens), len(chunks)
    packed = torch.tensor([*chunks, *q0s, *q_begins, *q_lens, *start_pos],
                          dtype=torch.int32).to(device)
    return PrefillMeta(packed[:t], packed[t:2 * t], packed[2 * t:2 * t + c],
                       packed[2 * t + c:2 * t + 2 * c], packed[2 * t + 2 * c:], bm, t)


def paged_prefill(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                  block_tables: torch.Tensor, meta: PrefillMeta, *, scale: float,
                  sliding_window: int | None = None, logit_softcap: float | None = None,
                  block_n: int | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """Attention for ``C`` chunks of a flat query batch ``q [T, H, D]`` (see
    :func:`prefill_meta`).

    Chunk ``c`` is rows ``q_begin[c] .. + q_len[c]`` of ``q``, at positions ``start[c] ..``;
    its keys/values (all positions ``< start[c] + q_len[c]``, the chunk's own already written)
    are in the blocks listed by ``block_tables[c]`` (int32 or int64, ``[C, M]``) of
    ``k_cache``/``v_cache [num_blocks, block_size, KV, D]``. Writes the chunk rows of ``out``
    (default: a new ``[T, H, D]`` tensor; other rows are left untouched) and returns it.
    """
    total, heads, dim = q.shape
    kv_heads = k_cache.shape[2]
    check_paged("paged_prefill", q, k_cache, v_cache)
    q = q.contiguous()
    out = torch.empty_like(q) if out is None else out
    if not meta.num_tiles:
        return out
    bn = block_n or default_tiles(dim)[1]
    tables = index_tensor(block_tables)
    _prefill_kernel[(meta.num_tiles, heads)](
        q, k_cache, v_cache, out, tables, meta.tile_chunk, meta.tile_q0,
        meta.q_begin, meta.q_len, meta.start,
        float(scale), float(logit_softcap or 0.0), int(sliding_window or 0),
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), tables.stride(0),
        out.stride(0), out.stride(1),
        GROUPS=heads // kv_heads, HEAD_DIM=dim, BLOCK_SIZE=k_cache.shape[1],
        BLOCK_M=meta.block_m, BLOCK_N=bn, BLOCK_D=max(16, triton.next_power_of_2(dim)),
        USE_SOFTCAP=logit_softcap is not None,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
    )
    return out
