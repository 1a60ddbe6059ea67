"""Random paged caches for the Triton kernel tests (a plain module: pytest puts tests/ on
sys.path)."""

from __future__ import annotations

import torch


def scattered_cache(lens, block_size, kv_heads, dim, gen, dtype=torch.float32):
    """``(k_cache, v_cache, tables, seqs)``: random caches with each sequence's blocks at random
    physical indices (spare blocks hold garbage that must never be read; table entries past a
    sequence's blocks are junk), and per sequence its keys/values contiguous for the
    reference attention."""
    need = [-(-n // block_size) for n in lens]
    num_blocks = sum(need) + 3
    k_cache = torch.randn(num_blocks, block_size, kv_heads, dim, generator=gen).to(dtype)
    v_cache = torch.randn(num_blocks, block_size, kv_heads, dim, generator=gen).to(dtype)
    perm = torch.randperm(num_blocks, generator=gen)
    tables = torch.full((len(lens), max(need) + 2), 10**6, dtype=torch.int32)
    seqs, used = [], 0
    for b, n in enumerate(lens):
        blocks = perm[used:used + need[b]]
        used += need[b]
        tables[b, :need[b]] = blocks.to(torch.int32)
        seqs.append((k_cache[blocks].flatten(0, 1)[:n], v_cache[blocks].flatten(0, 1)[:n]))
    return k_cache, v_cache, tables, seqs
