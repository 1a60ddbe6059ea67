"""Grouped causal attention (GQA, sliding window, soft-cap): the reference semantics every KV
cache implements (docs/architecture.md)."""

from __future__ import annotations

import torch

MAX_SCORES = 1 << 22
"""Score elements (float32) per query block: bounds the temporary to ~16 MiB for long prompts."""


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, first_pos: int, *,
                      scale: float, key_pos0: int = 0, sliding_window: int | None = None,
                      logit_softcap: float | None = None) -> torch.Tensor:
    """Queries ``q [n, H, D]`` at positions ``first_pos ..`` over one sequence's keys and values
    ``[S, KV, D]`` at positions ``key_pos0 .. first_pos + n - 1``; returns ``[n, H, D]`` in
    ``v``'s dtype (softmax in float32)."""
    # Query heads grouped by kv head read K and V once per group (no repeat), in blocks of at
    # most MAX_SCORES scores: on CPU SDPA's GQA expansion made decode ~10x slower.
    n, heads, dim = q.shape
    if sliding_window is not None:  # keys older than the first query's window: seen by none
        lo = max(key_pos0, first_pos - sliding_window + 1)
        k, v, key_pos0 = k[lo - key_pos0:], v[lo - key_pos0:], lo
    kv_heads = k.shape[1]
    groups = heads // kv_heads
    keys_t = k.permute(1, 2, 0)  # [KV, D, S]
    values = v.transpose(0, 1)  # [KV, S, D]
    kv_pos = torch.arange(key_pos0, key_pos0 + k.shape[0], device=q.device)  # [S]
    block = max(1, MAX_SCORES // (heads * max(1, k.shape[0])))
    outs = []
    for b0 in range(0, n, block):
        m = min(block, n - b0)
        qg = q[b0:b0 + m].reshape(m, kv_heads, groups, dim).permute(1, 2, 0, 3)  # [KV, G, m, D]
        scores = torch.matmul(qg.reshape(kv_heads, groups * m, dim), keys_t) * scale  # [KV,G*m,S]
        if logit_softcap is not None:
            scores = torch.tanh(scores / logit_softcap) * logit_softcap
        if n > 1:  # a lone query sees every key left after the window cut
            q_pos = torch.arange(first_pos + b0, first_pos + b0 + m, device=q.device)
            delta = q_pos[:, None] - kv_pos[None, :]  # [m, S]
            hidden = delta < 0
            if sliding_window is not None:
                hidden |= delta >= sliding_window
            scores = scores.view(kv_heads, groups, m, -1).masked_fill(hidden, float("-inf"))
        probs = torch.softmax(scores.float(), dim=-1).to(values.dtype)
        out = torch.matmul(probs.view(kv_heads, groups * m, -1), values)  # [KV, G*m, D]
        outs.append(out.view(kv_heads, groups, m, dim).permute(2, 0, 1, 3).reshape(m, heads, dim))
    return outs[0] if len(outs) == 1 else torch.cat(outs)
