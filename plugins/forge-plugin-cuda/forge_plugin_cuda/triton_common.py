"""What the Triton decode and prefill kernels share: reading key/value rows in place from the
paged cache through a block table (device side), and checking/normalizing the launch inputs
(host side)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def block_rows(table_row_ptr, pos, ok, BLOCK_SIZE: tl.constexpr):
    """``(block, row)`` of each position in ``pos`` through one sequence's block table (a
    position lives in block ``table[pos // BLOCK_SIZE]`` at row ``pos % BLOCK_SIZE``)."""
    # int64: block * stride overflows int32 once a layer's cache passes 2^31 elements.
    blk = tl.load(table_row_ptr + pos // BLOCK_SIZE, mask=ok, other=0).to(tl.int64)
    return blk, pos % BLOCK_SIZE


@triton.jit
def load_rows(cache_ptr, blk, row, head, d, mask, s_block, s_row, s_head):
    """The ``[N, BLOCK_D]`` tile of one kv head's rows at ``(blk, row)`` (zeros where masked)."""
    return tl.load(cache_ptr + blk[:, None] * s_block + row[:, None] * s_row + head * s_head
                   + d[None, :], mask=mask, other=0.0)


@triton.jit
def key_tile(table_row_ptr, k_ptr, tile_start, stop, head, d, d_ok, s_block, s_row, s_head,
             BLOCK_N: tl.constexpr, BLOCK_SIZE: tl.constexpr):
    """One tile of key positions ``tile_start ..`` (``BLOCK_N``, valid below ``stop``) and
    their keys: ``(pos, ok, blk, row, mask, k)``, the rest for loading the values alike."""
    pos = tile_start + tl.arange(0, BLOCK_N)
    ok = pos < stop
    blk, row = block_rows(table_row_ptr, pos, ok, BLOCK_SIZE)
    mask = ok[:, None] & d_ok[None, :]
    k = load_rows(k_ptr, blk, row, head, d, mask, s_block, s_row, s_head)
    return pos, ok, blk, row, mask, k


def check_paged(name: str, q: torch.Tensor, k_cache: torch.Tensor,
                v_cache: torch.Tensor) -> None:
    """Refuse inputs the kernels cannot read: query heads not a multiple of the kv heads, or
    caches whose last dimension is not contiguous."""
    heads, kv_heads = q.shape[1], k_cache.shape[2]
    if heads % kv_heads:
        raise ValueError(f"{name}: {heads} query heads not a multiple of {kv_heads} kv heads")
    if k_cache.stride(-1) != 1 or v_cache.stride(-1) != 1:
        raise ValueError(f"{name}: k_cache/v_cache need a contiguous last dimension")


def index_tensor(t: torch.Tensor) -> torch.Tensor:
    """Block tables / lengths as the kernels read them; already int32/int64 with a contiguous
    last dimension is used as is (no per-layer conversion kernels)."""
    if t.dtype not in (torch.int32, torch.int64) or t.stride(-1) != 1:
        return t.to(torch.int32).contiguous()
    return t
