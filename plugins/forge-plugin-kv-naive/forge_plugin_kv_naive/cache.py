"""The ``naive`` KV cache: one contiguous buffer per sequence, attention computed directly by
the kernel's reference :func:`~forge_kernel.engine.attention.grouped_attention` (causal, GQA,
sliding window, soft-capping) over each sequence's rows.

Buffers grow by doubling up to ``max_model_len``; capacity is the memory budget divided by the
bytes one token needs. No prefix caching, no paging: simple and obviously correct.
"""

from __future__ import annotations

import torch

from forge_kernel.engine.attention import grouped_attention
from forge_kernel.errors import KVCacheFull
from forge_kernel.interfaces.batch import ForwardBatch
from forge_kernel.interfaces.kv_cache import KVCache, KVCacheConfig, KVCacheSpec


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
    supports_fork = True
    supports_truncate = True

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

    def truncate(self, seq_id: int, num_tokens: int) -> None:
        """Forget rows past ``num_tokens`` (they are simply overwritten later)."""
        buf = self._seqs.get(seq_id)
        if buf is not None and buf.reserved > num_tokens:
            buf.reserved = num_tokens

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
            out[begin:end] = grouped_attention(q[begin:end], keys[:stop], values[:stop],
                                               chunk.start_pos, scale=scale,
                                               sliding_window=sliding_window,
                                               logit_softcap=logit_softcap)
        return out
