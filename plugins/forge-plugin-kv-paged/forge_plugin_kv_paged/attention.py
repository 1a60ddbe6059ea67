"""Attention over paged keys/values.

* :func:`paged_decode` — one query token per sequence (decode): a numba kernel walks each
  sequence's block table and reads keys/values **in place** (no gather), parallel over
  (sequence, query head). Two passes per row (scores, then softmax-weighted values) in float32,
  exact softmax like the reference, GQA (query head ``h`` reads kv head ``h // groups``), sliding
  window and logit soft-capping.
* :func:`dense_attention` — a prefill chunk of ``n`` queries over one sequence's gathered keys
  (gathered once per layer per chunk): grouped matmuls, explicit causal/window mask, float32
  softmax. Also the fallback for dtypes numba cannot read (bf16/fp16).

Semantics (shared with the ``naive`` reference cache): the query at position ``p`` sees keys at
positions ``<= p``; with ``sliding_window=w`` only ``> p - w``; with ``logit_softcap=c`` scores
become ``c * tanh(s / c)`` before masking.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch


@numba.njit(parallel=True, cache=True, fastmath=False)
def _decode_kernel(q, k_cache, v_cache, tables, lens, scale, window, softcap, out):  # pragma: no cover # noqa: E501
    # q/out: [B, H, D] f32; k_cache/v_cache: [NB, BS, KV, D] f32; tables: [B, M] i32; lens: [B]
    batch, heads, dim = q.shape
    block_size = k_cache.shape[1]
    groups = heads // k_cache.shape[2]
    for row in numba.prange(batch * heads):
        b = row // heads
        h = row % heads
        kvh = h // groups
        n = lens[b]
        lo = 0
        if window > 0 and n > window:
            lo = n - window
        scores = np.empty(n - lo, dtype=np.float32)
        best = -np.inf
        for p in range(lo, n):
            blk = tables[b, p // block_size]
            off = p % block_size
            s = np.float32(0.0)
            for d in range(dim):
                s += q[b, h, d] * k_cache[blk, off, kvh, d]
            s = s * scale
            if softcap > 0.0:
                s = np.float32(math.tanh(s / softcap) * softcap)
            scores[p - lo] = s
            if s > best:
                best = s
        total = np.float32(0.0)
        for i in range(n - lo):
            e = np.float32(math.exp(scores[i] - best))
            scores[i] = e
            total += e
        acc = np.zeros(dim, dtype=np.float32)
        for p in range(lo, n):
            blk = tables[b, p // block_size]
            off = p % block_size
            w = scores[p - lo]
            for d in range(dim):
                acc[d] += w * v_cache[blk, off, kvh, d]
        inv = np.float32(1.0) / total
        for d in range(dim):
            out[b, h, d] = acc[d] * inv


def paged_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                 tables: np.ndarray, lens: np.ndarray, *, scale: float,
                 sliding_window: int | None, logit_softcap: float | None) -> torch.Tensor:
    """Single-token attention for ``B`` sequences: ``q [B, H, D]`` float32 over the blocks of
    ``k_cache``/``v_cache [num_blocks, block_size, KV, D]`` listed in ``tables [B, M]``, the
    first ``lens[b]`` positions of each (the query is at position ``lens[b] - 1``).
    Returns ``[B, H, D]``."""
    qn = q.detach().contiguous().numpy()
    out = np.empty_like(qn)
    _decode_kernel(qn, k_cache.numpy(), v_cache.numpy(), tables, lens, np.float32(scale),
                   int(sliding_window or 0), np.float32(logit_softcap or 0.0), out)
    return torch.from_numpy(out)


MAX_SCORES = 1 << 22
"""Score elements per query block: bounds the temporary to ~16 MiB for long prompts."""


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, first_pos: int,
                    key_pos0: int, *, scale: float, sliding_window: int | None = None,
                    logit_softcap: float | None = None) -> torch.Tensor:
    """Queries ``q [n, H, D]`` at positions ``first_pos ..`` over keys/values ``[S, KV, D]`` at
    positions ``key_pos0 .. key_pos0 + S - 1``. Returns ``[n, H, D]`` in ``q``'s dtype."""
    n, heads, dim = q.shape
    kv_heads = k.shape[1]
    groups = heads // kv_heads
    keys_t = k.permute(1, 2, 0)  # [KV, D, S]
    values = v.transpose(0, 1)  # [KV, S, D]
    kv_pos = torch.arange(key_pos0, key_pos0 + k.shape[0])
    block = max(1, MAX_SCORES // (heads * max(1, k.shape[0])))
    outs = []
    for b0 in range(0, n, block):
        m = min(block, n - b0)
        qg = q[b0:b0 + m].reshape(m, kv_heads, groups, dim).permute(1, 2, 0, 3)
        scores = torch.matmul(qg.reshape(kv_heads, groups * m, dim), keys_t) * scale
        if logit_softcap is not None:
            scores = torch.tanh(scores / logit_softcap) * logit_softcap
        q_pos = torch.arange(first_pos + b0, first_pos + b0 + m)
        delta = q_pos[:, None] - kv_pos[None, :]  # [m, S]
        hidden = delta < 0
        if sliding_window is not None:
            hidden |= delta >= sliding_window
        scores = scores.view(kv_heads, groups, m, -1).masked_fill(hidden, float("-inf"))
        probs = torch.softmax(scores.float(), dim=-1).to(values.dtype)
        out = torch.matmul(probs.view(kv_heads, groups * m, -1), values)  # [KV, G*m, D]
        outs.append(out.view(kv_heads, groups, m, dim).permute(2, 0, 1, 3).reshape(m, heads, dim))
    return outs[0] if len(outs) == 1 else torch.cat(outs)
