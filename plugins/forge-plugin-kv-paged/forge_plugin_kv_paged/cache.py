"""The ``paged`` KV cache: fixed-size blocks, per-sequence block tables, prefix caching and
copy-on-write sharing.

Storage is one tensor for keys and one for values, ``[layers, num_blocks, block_size, KV, D]``;
a sequence's token at position ``p`` lives in block ``table[p // block_size]`` at row
``p % block_size``. Allocation is token-granular at the interface and block-granular inside.

Sharing: :meth:`fork` and prefix hits make several tables point at one block (reference
counted). A block is written only by a sequence owning it alone: before a step writes into a
shared block (the partially filled last block after a fork), the writer gets a private copy
(:meth:`allocate` does it, with the copy counted in :meth:`can_allocate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from forge_kernel.engine.attention import grouped_attention
from forge_kernel.errors import KVCacheFull
from forge_kernel.interfaces.batch import ForwardBatch
from forge_kernel.interfaces.kv_cache import KVCache, KVCacheConfig, KVCacheSpec
from forge_plugin_kv_paged.attention import paged_decode, write_rows
from forge_plugin_kv_paged.block_manager import BlockPool
from forge_plugin_kv_paged.prefix_cache import ROOT_HASH, PrefixCache

PREFILL_QUERY_BLOCK = 128
"""Prefill queries per attention call: smaller blocks skip more masked keys but each call costs a
few torch ops (of 512 queries' full score matrix 128 computes 62%, 64 56%: measured no faster)."""


@dataclass(slots=True)
class _SeqBlocks:
    """One sequence's block table and bookkeeping."""

    blocks: list[int] = field(default_factory=list)
    num_tokens: int = 0
    """Tokens allocated (``<= len(blocks) * block_size``)."""
    written: int = 0
    """Tokens whose keys/values are stored; positions before it are never written again."""
    hashes: list[int] = field(default_factory=list)
    """Chain hashes of the leading full blocks already published (or found) in the cache."""


@dataclass(slots=True)
class _StepPlan:
    """Per-batch work shared by all layers: write slots, decode rows, prefill chunks."""

    batch: ForwardBatch
    slots: torch.Tensor  # [T] int64 flat row in [num_blocks * block_size]
    decode_rows: torch.Tensor  # [B] int64 rows of ``batch`` that are single-token chunks
    decode_tables: np.ndarray  # [B, M] int32
    decode_lens: np.ndarray  # [B] int32
    prefills: list[tuple[int, int, int, int, torch.Tensor]]  # (begin, end, start, stop, blocks)
    all_decode: bool
    """Every row of the batch is a decode row, in order: attention writes the output directly."""


class PagedKVCache(KVCache):
    """Block-table KV cache. Factory: ``PagedKVCache(spec, config)``."""

    name = "paged"
    supports_fork = True
    supports_truncate = True

    def __init__(self, spec: KVCacheSpec, config: KVCacheConfig | None = None) -> None:
        self.spec = spec
        self.config = config = config or KVCacheConfig()
        bs = int(config.block_size)
        if bs < 1:
            raise ValueError(f"--block-size must be >= 1, got {config.block_size}")
        if config.num_blocks is not None:
            num_blocks = int(config.num_blocks)
        else:
            num_blocks = int(config.memory_budget_bytes) // (spec.bytes_per_token * bs)
        if num_blocks < 1:
            raise ValueError(f"paged KV cache: {num_blocks} blocks of {bs} tokens "
                             f"(--num-blocks / KV memory budget too small)")
        self.block_size = bs
        self.num_blocks = num_blocks
        self.prefix = PrefixCache() if config.enable_prefix_caching else None
        self.pool = BlockPool(num_blocks, self.prefix)
        shape = (spec.num_layers, num_blocks, bs, spec.num_kv_heads, spec.head_dim)
        # Uninitialized: a position is always written before any read (attention reads only
        # positions < the step's stop, all written), and on CPU the pages of an untouched
        # block are never committed, so resident memory follows use, within the budget.
        self.k = torch.empty(shape, dtype=spec.dtype, device=spec.device)
        self.v = torch.empty(shape, dtype=spec.dtype, device=spec.device)
        self._layers = list(zip(self.k.unbind(0), self.v.unbind(0), strict=True))  # views
        self._seqs: dict[int, _SeqBlocks] = {}
        self._plan: _StepPlan | None = None
        # The decode kernels read float32 CPU memory in place; other dtypes take the gather path.
        self._in_place = spec.dtype == torch.float32 and str(spec.device) == "cpu"

    @property
    def supports_prefix_caching(self) -> bool:
        return self.prefix is not None

    # -- allocation -------------------------------------------------------------------------
    def capacity_tokens(self) -> int:
        return self.num_blocks * self.block_size

    def free_tokens(self) -> int:
        return self.pool.num_available() * self.block_size

    def usage(self) -> float:
        return self.pool.num_in_use() / self.num_blocks

    def block_table(self, seq_id: int) -> list[int]:
        """The physical blocks of ``seq_id`` (a copy), for tests and debugging."""
        state = self._seqs.get(seq_id)
        return list(state.blocks) if state else []

    def _blocks_needed(self, state: _SeqBlocks | None, total: int) -> tuple[int, list[int]]:
        """New blocks to grow to ``total`` tokens, and table indices needing a private copy."""
        want = -(-total // self.block_size)
        if state is None:
            return want, []
        first = state.written // self.block_size
        stop = min(want, len(state.blocks))
        ref = self.pool.ref_count
        cow = [i for i in range(first, stop) if ref[state.blocks[i]] > 1]
        return max(0, want - len(state.blocks)), cow

    def can_allocate(self, seq_id: int, total_tokens: int) -> bool:
        if total_tokens > self.spec.max_model_len:
            return False
        new, cow = self._blocks_needed(self._seqs.get(seq_id), total_tokens)
        return new + len(cow) <= self.pool.num_available()

    def allocate(self, seq_id: int, total_tokens: int) -> None:
        if total_tokens > self.spec.max_model_len:
            raise KVCacheFull(f"sequence {seq_id}: {total_tokens} tokens exceed max_model_len "
                              f"{self.spec.max_model_len}")
        state = self._seqs.get(seq_id)
        new, cow = self._blocks_needed(state, total_tokens)
        if new + len(cow) > self.pool.num_available():
            raise KVCacheFull(f"sequence {seq_id}: needs {new + len(cow)} more blocks of "
                              f"{self.block_size} tokens, {self.pool.num_available()} free of "
                              f"{self.num_blocks}")
        if state is None:
            state = self._seqs[seq_id] = _SeqBlocks()
        for i in cow:
            self._copy_on_write(state, i)
        state.blocks.extend(self.pool.take() for _ in range(new))
        state.num_tokens = max(state.num_tokens, total_tokens)

    def _copy_on_write(self, state: _SeqBlocks, index: int) -> None:
        old = state.blocks[index]
        block = self.pool.take()
        self.k[:, block].copy_(self.k[:, old])  # every layer at once
        self.v[:, block].copy_(self.v[:, old])
        state.blocks[index] = block
        self.pool.release(old)

    def free(self, seq_id: int) -> None:
        state = self._seqs.pop(seq_id, None)
        if state is None:
            return
        # Tail first: the LRU then evicts a prefix's last blocks before its first ones.
        for block in reversed(state.blocks):
            self.pool.release(block)

    def fork(self, parent_seq_id: int, child_seq_id: int) -> None:
        """The child shares every parent block; the partially filled last block is copied by
        whichever of the two writes into it first."""
        parent = self._seqs.get(parent_seq_id)
        if parent is None:
            raise KeyError(f"cannot fork unknown sequence {parent_seq_id}")
        self.free(child_seq_id)
        for block in parent.blocks:
            self.pool.incref(block)
        self._seqs[child_seq_id] = _SeqBlocks(list(parent.blocks), parent.num_tokens,
                                              parent.written, list(parent.hashes))

    def truncate(self, seq_id: int, num_tokens: int) -> None:
        """Drop the blocks past ``num_tokens`` (rejected speculative tokens). The kept last
        block, if partly cut and also seen by others (a fork, or published in the prefix
        cache), is replaced by a private copy, so the next write cannot change their view."""
        state = self._seqs.get(seq_id)
        if state is None or state.num_tokens <= num_tokens:
            return
        bs = self.block_size
        keep = -(-num_tokens // bs)
        for block in reversed(state.blocks[keep:]):
            self.pool.release(block)
        del state.blocks[keep:]
        del state.hashes[num_tokens // bs:]
        state.num_tokens = num_tokens
        state.written = min(state.written, num_tokens)
        last = keep - 1
        if num_tokens % bs and (self.pool.ref_count[state.blocks[last]] > 1 or (
                self.prefix is not None and self.prefix.is_cached(state.blocks[last]))):
            if not self.pool.num_available():
                raise KVCacheFull(f"sequence {seq_id}: no block to copy on truncation")
            self._copy_on_write(state, last)

    # -- prefix caching ---------------------------------------------------------------------
    def match_prefix(self, seq_id: int, token_ids: Sequence[int]) -> int:
        """Attach cached full blocks matching ``token_ids``; at least one token is always left
        to compute (its logits are needed), so at most ``(len - 1) // block_size`` blocks."""
        if self.prefix is None or seq_id in self._seqs:
            return 0
        bs = self.block_size
        state = _SeqBlocks()
        parent = ROOT_HASH
        for i in range((len(token_ids) - 1) // bs):
            h, block = self.prefix.lookup(parent, tuple(token_ids[i * bs:(i + 1) * bs]))
            if block is None:
                break
            self.pool.incref(block)
            state.blocks.append(block)
            state.hashes.append(h)
            parent = h
        if not state.blocks:
            return 0
        state.num_tokens = state.written = len(state.blocks) * bs
        self._seqs[seq_id] = state
        return state.num_tokens

    def commit(self, seq_id: int, token_ids: Sequence[int], num_computed: int) -> None:
        """Publish ``seq_id``'s newly completed full blocks in the prefix cache."""
        state = self._seqs.get(seq_id)
        if state is None:
            return
        state.written = max(state.written, num_computed)
        if self.prefix is None:
            return
        bs = self.block_size
        full = min(num_computed // bs, len(state.blocks))
        for i in range(len(state.hashes), full):
            parent = state.hashes[-1] if state.hashes else ROOT_HASH
            tokens = tuple(token_ids[i * bs:(i + 1) * bs])
            state.hashes.append(self.prefix.publish(state.blocks[i], parent, tokens))

    def reset_prefix_cache(self) -> None:
        """Drop every unreferenced cached block (they become plain free blocks)."""
        if self.prefix is not None:
            self.pool._free.extend(self.prefix.clear())

    # -- data path --------------------------------------------------------------------------
    def begin_step(self, batch: ForwardBatch) -> None:
        """Plan the step once for every layer: write slots, decode block tables, prefill
        chunks; shared blocks about to be written get their private copy here."""
        self._plan = None
        self._plan = self._plan_step(batch)

    def _writable_blocks(self, chunk) -> tuple[_SeqBlocks, list[int], int]:
        """Check that ``chunk``'s positions are allocated and give its sequence sole ownership
        of every block the chunk writes (copy-on-write). Returns the sequence's state, its block
        table up to the chunk's end, and that end position."""
        bs = self.block_size
        state = self._seqs.get(chunk.seq_id)
        stop = chunk.start_pos + chunk.num_tokens
        if state is None or state.num_tokens < stop:
            have = state.num_tokens if state else 0
            raise KVCacheFull(f"sequence {chunk.seq_id}: step writes positions up to "
                              f"{stop - 1} but only {have} tokens are allocated")
        ref = self.pool.ref_count
        for i in range(chunk.start_pos // bs, -(-stop // bs)):
            if ref[state.blocks[i]] > 1:  # shared block about to be written
                if not self.pool.num_available():
                    raise KVCacheFull(f"sequence {chunk.seq_id}: no block for copy-on-write")
                self._copy_on_write(state, i)
        return state, state.blocks[:-(-stop // bs)], stop

    def _plan_step(self, batch: ForwardBatch) -> _StepPlan:
        # Plain Python ints for the slots and tables: a decode step has one position per
        # sequence, where a torch op per chunk cost more than the arithmetic.
        bs = self.block_size
        slots, rows, tables, lens, prefills = [], [], [], [], []
        for chunk, begin, end in batch.iter_spans():
            state, blocks, stop = self._writable_blocks(chunk)
            slots.extend(blocks[p // bs] * bs + p % bs for p in range(chunk.start_pos, stop))
            if self._in_place and (chunk.num_tokens == 1 or chunk.num_logits == chunk.num_tokens):
                # Decode rows; a speculative chunk (logits at every token) too, one row per
                # token at its own length, so each verified token gets bit for bit the
                # attention a plain decode step gives it (greedy stays identical).
                for j in range(chunk.num_tokens):
                    rows.append(begin + j)
                    tables.append(blocks)
                    lens.append(chunk.start_pos + j + 1)
            else:
                table = torch.tensor(blocks, dtype=torch.long)
                prefills.append((begin, end, chunk.start_pos, stop, table))
            state.written = max(state.written, stop)
        width = max((len(t) for t in tables), default=0)
        table_arr = np.zeros((len(tables), width), dtype=np.int32)
        for i, t in enumerate(tables):
            table_arr[i, :len(t)] = t
        return _StepPlan(batch, torch.tensor(slots, dtype=torch.long),
                         torch.tensor(rows, dtype=torch.long), table_arr,
                         np.asarray(lens, dtype=np.int32), prefills,
                         not prefills and len(rows) == len(slots))

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               batch: ForwardBatch, *, scale: float, sliding_window: int | None = None,
               logit_softcap: float | None = None) -> torch.Tensor:
        plan = self._plan
        if plan is None or plan.batch is not batch:
            raise RuntimeError("paged KV cache: attend() for a batch begin_step() was not "
                               "called with (the engine calls it once per step)")
        kl, vl = self._layers[layer]  # [NB, BS, KV, D]
        heads, dim = self.spec.num_kv_heads, self.spec.head_dim
        write_rows(kl, vl, k, v, plan.slots)
        if plan.all_decode and q.dtype == torch.float32:  # a decode step: no gather, no scatter
            return paged_decode(q, kl, vl, plan.decode_tables, plan.decode_lens, scale=scale,
                                sliding_window=sliding_window, logit_softcap=logit_softcap)
        out = torch.empty_like(q)  # [T, H, D]
        if len(plan.decode_rows):
            qd = q.index_select(0, plan.decode_rows).float()  # [B, H, D]
            res = paged_decode(qd, kl, vl, plan.decode_tables, plan.decode_lens, scale=scale,
                               sliding_window=sliding_window, logit_softcap=logit_softcap)
            out.index_copy_(0, plan.decode_rows, res.to(q.dtype))
        bs = self.block_size
        for begin, end, start, stop, table in plan.prefills:
            lo = 0
            if sliding_window is not None:
                lo = max(0, start - sliding_window + 1) // bs * bs  # whole blocks only
            keys = kl[table[lo // bs:]].reshape(-1, heads, dim)[:stop - lo]  # [S, KV, D]
            values = vl[table[lo // bs:]].reshape(-1, heads, dim)[:stop - lo]
            # Causal: the queries of a block see no key past their last position, so each
            # block gets only the keys up to it (what it would mask anyway): a long chunk
            # computes ~(1 + 1/blocks) / 2 of the full score matrix.
            for b0 in range(begin, end, PREFILL_QUERY_BLOCK):
                b1 = min(end, b0 + PREFILL_QUERY_BLOCK)
                seen = start + b1 - begin - lo  # keys at positions < the block's last + 1
                out[b0:b1] = grouped_attention(q[b0:b1], keys[:seen], values[:seen],
                                               start + b0 - begin, key_pos0=lo, scale=scale,
                                               sliding_window=sliding_window,
                                               logit_softcap=logit_softcap)
        return out
