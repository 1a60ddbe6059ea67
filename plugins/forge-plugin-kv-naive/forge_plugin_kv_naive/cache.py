"""The ``naive`` KV cache: one contiguous buffer per sequence, attention computed directly.

This is the reference for attention semantics in forge (other caches are tested against it):

* causal: the query at absolute position ``p`` sees keys at positions ``<= p``;
* ``sliding_window=w``: it sees only positions ``> p - w`` (the last ``w``, itself included);
* ``logit_softcap=c``: scores become ``c * tanh(scores / c)`` before masking and softmax;
* grouped-query attention: query head ``h`` reads kv head ``h // (num_heads // num_kv_heads)``.

Buffers grow by doubling up to ``max_model_len``; capacity is the memory budget divided by the
bytes one token needs. No prefix caching, no paging: simple and obviously correct.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from forge_kernel.errors import KVCacheFull
from forge_kernel.interfaces.kv_cache import KVCache, KVCacheConfig, KVCacheSpec
from forge_kernel.interfaces.model import ForwardBatch


class _SeqBuffer:
    """Keys and values of one sequence: ``[layers, capacity, kv_heads, head_dim]`` each."""

    __slots__ = ("k", "v", "reserved")

    def __init__(self, spec: KVCacheSpec, rows: int) -> None:
        shape = (spec.num_layers, rows, spec.num_kv_heads, spec.head_dim)
        self.k = torch.zeros(shape, dtype=spec.dtype, device=spec.device)
        self.v = torch.zeros(shape, dtype=spec.dtype, device=spec.device)
        self.reserved = 0
        """Tokens allocated to the sequence (accounting), <= buffer rows."""

    def ensure_rows(self, rows: int) -> None:
        if rows <= self.k.shape[1]:
            return
        grown_k = self.k.new_zeros((self.k.shape[0], rows, *self.k.shape[2:]))
        grown_v = self.v.new_zeros(grown_k.shape)
        used = self.k.shape[1]
        grown_k[:, :used], grown_v[:, :used] = self.k, self.v
        self.k, self.v = grown_k, grown_v


class NaiveKVCache(KVCache):
    """Contiguous per-sequence KV storage. Factory: ``NaiveKVCache(spec, config)``."""

    name = "naive"

    def __init__(self, spec: KVCacheSpec, config: KVCacheConfig | None = None) -> None:
        self.spec = spec
        self.config = config or KVCacheConfig()
        per_token = spec.bytes_per_token
        if self.config.num_blocks is not None:
            self._capacity = int(self.config.num_blocks) * int(self.config.block_size)
        else:
            self._capacity = max(0, int(self.config.memory_budget_bytes) // per_token)
        self._seqs: dict[int, _SeqBuffer] = {}

    # -- allocation -------------------------------------------------------------------------
    def capacity_tokens(self) -> int:
        return self._capacity

    def _used(self) -> int:
        return sum(buf.reserved for buf in self._seqs.values())

    def free_tokens(self) -> int:
        return self._capacity - self._used()

    def can_allocate(self, seq_id: int, total_tokens: int) -> bool:
        have = self._seqs[seq_id].reserved if seq_id in self._seqs else 0
        return (total_tokens <= self.spec.max_model_len
                and total_tokens - have <= self.free_tokens())

    def allocate(self, seq_id: int, total_tokens: int) -> None:
        if total_tokens > self.spec.max_model_len:
            raise KVCacheFull(f"sequence {seq_id}: {total_tokens} tokens exceed max_model_len "
                              f"{self.spec.max_model_len}")
        buf = self._seqs.get(seq_id)
        have = buf.reserved if buf else 0
        if total_tokens <= have:
            return
        if total_tokens - have > self.free_tokens():
            raise KVCacheFull(f"sequence {seq_id}: needs {total_tokens - have} more tokens, "
                              f"{self.free_tokens()} free of {self._capacity}")
        if buf is None:
            buf = self._seqs[seq_id] = _SeqBuffer(self.spec, max(16, total_tokens))
        elif total_tokens > buf.k.shape[1]:
            # Doubling keeps decode's one-token growth amortized O(1).
            buf.ensure_rows(min(self.spec.max_model_len, max(total_tokens, 2 * buf.k.shape[1])))
        buf.reserved = total_tokens

    def free(self, seq_id: int) -> None:
        self._seqs.pop(seq_id, None)

    def fork(self, parent_seq_id: int, child_seq_id: int) -> None:
        """Copy the parent's cached tokens into a new child buffer (no sharing in this cache)."""
        parent = self._seqs[parent_seq_id]
        if parent.reserved > self.free_tokens():
            raise KVCacheFull(f"cannot fork sequence {parent_seq_id}: {parent.reserved} tokens "
                              f"needed, {self.free_tokens()} free")
        child = _SeqBuffer(self.spec, parent.k.shape[1])
        child.k.copy_(parent.k)
        child.v.copy_(parent.v)
        child.reserved = parent.reserved
        self._seqs[child_seq_id] = child

    def match_prefix(self, seq_id: int, token_ids: Sequence[int]) -> int:
        return 0

    def usage(self) -> float:
        return self._used() / self._capacity if self._capacity else 0.0

    # -- data path --------------------------------------------------------------------------
    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               batch: ForwardBatch, *, scale: float, sliding_window: int | None = None,
               logit_softcap: float | None = None) -> torch.Tensor:
        out = torch.empty_like(q)  # [T, H, D]
        for chunk, begin, end in batch.iter_spans():
            buf = self._seqs.get(chunk.seq_id)
            stop = chunk.start_pos + chunk.num_tokens
            if buf is None or buf.reserved < stop:
                have = buf.reserved if buf else 0
                raise KVCacheFull(f"sequence {chunk.seq_id}: step writes positions up to "
                                  f"{stop - 1} but only {have} tokens are allocated")
            keys, values = buf.k[layer], buf.v[layer]  # [S, KV, D]
            keys[chunk.start_pos:stop] = k[begin:end]
            values[chunk.start_pos:stop] = v[begin:end]
            out[begin:end] = attention(q[begin:end], keys[:stop], values[:stop],
                                       chunk.start_pos, scale=scale,
                                       sliding_window=sliding_window, logit_softcap=logit_softcap)
        return out


MAX_SCORES = 1 << 22
"""Score elements (float32) per query block: bounds attention's temporary to ~16 MiB."""


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, first_pos: int, *,
              scale: float, sliding_window: int | None = None,
              logit_softcap: float | None = None) -> torch.Tensor:
    """Attention of queries ``q [n, H, D]`` at positions ``first_pos .. first_pos + n - 1`` over
    keys and values ``[S, KV, D]`` at positions ``0 .. S-1`` (``S = first_pos + n``).
    Returns ``[n, H, D]``.

    Query heads are grouped by kv head so K and V are read once per group (no repeat), in
    query blocks of at most :data:`MAX_SCORES` scores. On CPU this beats SDPA, whose GQA
    expansion made single-query decode ~10x slower at a few hundred keys.
    """
    n, heads, dim = q.shape
    lo = 0
    if sliding_window is not None:
        # Keys older than the first query's window are invisible to every query of the chunk.
        lo = max(0, first_pos - sliding_window + 1)
        k, v = k[lo:], v[lo:]
    kv_heads = k.shape[1]
    groups = heads // kv_heads
    keys_t = k.permute(1, 2, 0)  # [KV, D, S]
    values = v.transpose(0, 1)  # [KV, S, D]
    kv_pos = torch.arange(lo, lo + k.shape[0], device=q.device)
    block = max(1, MAX_SCORES // (heads * k.shape[0]))
    outs = []
    for b0 in range(0, n, block):
        m = min(block, n - b0)
        qg = q[b0:b0 + m].reshape(m, kv_heads, groups, dim).permute(1, 2, 0, 3)
        scores = torch.matmul(qg.reshape(kv_heads, groups * m, dim), keys_t) * scale
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
