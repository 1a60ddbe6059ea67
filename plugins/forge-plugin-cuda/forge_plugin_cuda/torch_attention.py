"""Paged attention in plain torch, on whatever device the cache is on: the path for devices
without Triton (Metal, CPU) and for CUDA when Triton is not installed.

* :func:`decode_attention` — one query per sequence, all sequences at once: their blocks are
  gathered into ``[B, M * block_size, KV, D]`` and masked by length (and window).
* :func:`prefill_attention` — a chunk of ``n`` queries (positions ``start .. stop - 1``)
  over keys ``lo .. stop - 1`` gathered from its blocks once per layer (:func:`gather_keys`).

Without soft-capping both are one ``scaled_dot_product_attention`` call with a boolean
causal/window mask and grouped-query broadcasting (the fused kernels on CUDA); soft-capping
(Gemma 2) needs the scores themselves, so it takes explicit matmuls with a float32 softmax.
``expand_kv`` repeats kv heads instead of SDPA's ``enable_gqa`` (which MPS lacks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gather_keys(cache: torch.Tensor, table: torch.Tensor, lo: int, stop: int) -> torch.Tensor:
    """Rows ``lo .. stop - 1`` of one sequence from ``cache [NB, BS, KV, D]`` through its
    block ``table`` (int64, on the cache's device); ``lo`` must be block-aligned."""
    bs = cache.shape[1]
    blocks = table[lo // bs:-(-stop // bs)]
    return cache.index_select(0, blocks).flatten(0, 1)[:stop - lo]


def prefill_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, first_pos: int,
                      key_pos0: int, *, scale: float, sliding_window: int | None = None,
                      logit_softcap: float | None = None, expand_kv: bool = False) -> torch.Tensor:
    """Queries ``q [n, H, D]`` at positions ``first_pos ..`` over ``k``/``v [S, KV, D]`` at
    positions ``key_pos0 .. key_pos0 + S - 1``. Returns ``[n, H, D]`` in ``q``'s dtype."""
    n, heads, dim = q.shape
    kv_heads = k.shape[1]
    dev = q.device
    q_pos = torch.arange(first_pos, first_pos + n, device=dev)
    kv_pos = torch.arange(key_pos0, key_pos0 + k.shape[0], device=dev)
    delta = q_pos[:, None] - kv_pos[None, :]  # [n, S]
    visible = delta >= 0
    if sliding_window is not None:
        visible &= delta < sliding_window
    qh, kh, vh = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # [heads, len, D]
    if logit_softcap is None:
        return _sdpa(qh, kh, vh, visible, scale, expand_kv).transpose(0, 1)
    groups = heads // kv_heads
    qg = qh.reshape(kv_heads, groups * n, dim).float()
    scores = torch.matmul(qg, kh.float().transpose(1, 2)) * scale  # [KV, G*n, S]
    scores = torch.tanh(scores / logit_softcap) * logit_softcap
    scores = scores.view(kv_heads, groups, n, -1).masked_fill(~visible, float("-inf"))
    probs = torch.softmax(scores, dim=-1).view(kv_heads, groups * n, -1)
    out = torch.matmul(probs, vh.float()).view(heads, n, dim)
    return out.transpose(0, 1).to(q.dtype)


def _sdpa(qh: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor, visible: torch.Tensor,
          scale: float, expand_kv: bool) -> torch.Tensor:
    """SDPA of ``qh [..., H, n, D]`` over ``kh``/``vh [..., KV, S, D]`` with a boolean mask."""
    groups = qh.shape[-3] // kh.shape[-3]
    kh, vh = kh.to(qh.dtype), vh.to(qh.dtype)
    if groups > 1 and expand_kv:
        kh, vh = kh.repeat_interleave(groups, dim=-3), vh.repeat_interleave(groups, dim=-3)
    return F.scaled_dot_product_attention(qh, kh, vh, attn_mask=visible, scale=scale,
                                          enable_gqa=groups > 1 and not expand_kv)


def decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                     block_tables: torch.Tensor, seq_lens: torch.Tensor, *, scale: float,
                     sliding_window: int | None = None, logit_softcap: float | None = None,
                     expand_kv: bool = False) -> torch.Tensor:
    """``q [B, H, D]`` (the query of sequence ``b`` at position ``seq_lens[b] - 1``) over
    the blocks ``block_tables [B, M]`` (long, on the cache's device; entries past a sequence's
    blocks must be valid block ids, e.g. 0) of ``k_cache``/``v_cache [NB, BS, KV, D]``.
    Returns ``[B, H, D]`` in ``q``'s dtype."""
    batch, heads, dim = q.shape
    if batch == 0:
        return torch.empty_like(q)
    kv_heads = k_cache.shape[2]
    width = block_tables.shape[1] * k_cache.shape[1]
    keys = k_cache[block_tables].reshape(batch, width, kv_heads, dim).transpose(1, 2)
    values = v_cache[block_tables].reshape(batch, width, kv_heads, dim).transpose(1, 2)
    pos = torch.arange(width, device=q.device)
    lens = seq_lens.to(device=q.device, dtype=torch.long)[:, None]
    visible = pos[None, :] < lens  # [B, S]
    if sliding_window is not None:
        visible &= pos[None, :] >= lens - sliding_window
    qh = q[:, :, None, :]  # [B, H, 1, D]
    if logit_softcap is None:
        out = _sdpa(qh, keys, values, visible[:, None, None, :], scale, expand_kv)
        return out[:, :, 0, :]
    groups = heads // kv_heads
    qg = qh.reshape(batch, kv_heads, groups, dim).float()
    scores = torch.matmul(qg, keys.float().transpose(-1, -2)) * scale  # [B, KV, G, S]
    scores = torch.tanh(scores / logit_softcap) * logit_softcap
    scores = scores.masked_fill(~visible[:, None, None, :], float("-inf"))
    out = torch.matmul(torch.softmax(scores, dim=-1), values.float())  # [B, KV, G, D]
    return out.reshape(batch, heads, dim).to(q.dtype)
