"""The ``device-paged`` KV cache: the ``paged`` cache's allocation (block pool, prefix caching,
copy-on-write forks) with its blocks and the per-step block tables on the model's device.

Allocation is inherited from :class:`forge_plugin_kv_paged.cache.PagedKVCache` unchanged; the
data path is replaced. Once per step (:meth:`begin_step`, or lazily at the first
:meth:`attend` of a new batch for engines that do not call it) the cache resolves write slots,
decode block tables, lengths and prefill chunk metadata on the host, then sends them to the
device in **one** copy; every layer reuses them. Attention is the Triton kernels
(:mod:`~forge_plugin_cuda.triton_decode`, :mod:`~forge_plugin_cuda.triton_prefill`) or, where
Triton is absent (Metal, CPU, CUDA without the extra), gather + SDPA
(:mod:`~forge_plugin_cuda.torch_attention`).

Storage holds one block more than the pool hands out: the **scratch block**, where padded rows
of a CUDA-graph decode bucket write their keys/values (see :mod:`~forge_plugin_cuda.graphs`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from forge_plugin_kv_paged.cache import PagedKVCache

from forge_kernel.errors import ConfigError
from forge_kernel.interfaces.kv_cache import KVCacheConfig, KVCacheSpec
from forge_plugin_cuda import torch_attention
from forge_plugin_cuda.availability import BackendUnavailable

ATTENTION = ("auto", "triton", "torch")


def resolve_attention(choice: str, device: torch.device) -> str:
    """``triton`` or ``torch`` for ``choice`` on ``device``; ``auto`` takes Triton on CUDA when
    it imports. Triton on CPU tensors only works in its interpreter (``TRITON_INTERPRET=1``)."""
    if choice not in ATTENTION:
        raise ConfigError(f"[cuda] attention must be one of {', '.join(ATTENTION)}, "
                          f"got {choice!r}")
    if choice == "torch" or (choice == "auto" and device.type != "cuda"):
        return "torch"
    try:
        import forge_plugin_cuda.triton_decode  # noqa: F401 - imports triton
    except ImportError as exc:
        if choice == "auto":
            return "torch"
        raise ConfigError(f"attention 'triton' needs Triton ({exc}); pip install "
                          f"'forge-plugin-cuda[triton]'") from None
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ConfigError(f"attention 'triton' on {device} needs TRITON_INTERPRET=1 (Triton "
                          f"compiles for GPUs only)")
    return "triton"


@dataclass(slots=True)
class _DeviceStep:
    """One step's metadata, on the cache's device."""

    batch: Any
    slots: torch.Tensor  # [T] int64 flat row in [(num_blocks + 1) * block_size]
    decode_rows: torch.Tensor  # [B] int64 rows of the batch that are single-token chunks
    decode_tables: torch.Tensor  # [B, M] int64
    decode_lens: torch.Tensor  # [B] int64
    all_decode: bool
    prefills: list[tuple[int, int, int, int]]  # (begin, end, start, stop) per chunk
    prefill_tables: torch.Tensor  # [C, M'] int64
    prefill_meta: Any  # triton_prefill.PrefillMeta or None


class DevicePagedKVCache(PagedKVCache):
    """Paged cache on ``spec.device``. Factory: ``DevicePagedKVCache(spec, config)``;
    ``attention`` is ``auto``, ``triton`` or ``torch`` (see :func:`resolve_attention`);
    ``expand_kv`` makes the torch path repeat kv heads instead of SDPA's grouped-query mode
    (default: on MPS, which lacks it)."""

    name = "device-paged"
    supports_prefix_caching = True
    supports_fork = True

    def __init__(self, spec: KVCacheSpec, config: KVCacheConfig | None = None,
                 attention: str = "auto", expand_kv: bool | None = None) -> None:
        # The parent sizes the pool and the bookkeeping; its storage goes to the meta device
        # (free) because this cache allocates its own, one scratch block larger.
        super().__init__(dataclasses.replace(spec, device="meta"), config)
        self.spec = spec
        self.device = torch.device(spec.device)
        self.attention = resolve_attention(attention, self.device)
        self._expand_kv = self.device.type == "mps" if expand_kv is None else expand_kv
        self.scratch_block = self.num_blocks
        shape = (spec.num_layers, self.num_blocks + 1, self.block_size, spec.num_kv_heads,
                 spec.head_dim)
        try:
            # Zeroed, not empty: the torch path gathers whole blocks and masks the unused rows,
            # and a masked NaN from uninitialized memory would still poison ``probs @ V``.
            # (Rows written once hold real, finite keys/values.) One memset at start-up.
            self.k = torch.zeros(shape, dtype=spec.dtype, device=self.device)
            self.v = torch.zeros(shape, dtype=spec.dtype, device=self.device)
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            need = 2 * np.prod(shape) * torch.empty((), dtype=spec.dtype).element_size()
            raise BackendUnavailable(
                f"device-paged KV cache: cannot allocate {int(need) >> 20} MiB on "
                f"{self.device} ({' '.join(str(exc).split())[:160]}); lower --num-blocks or "
                f"the KV memory budget") from None
        self._numba = False
        self._step: _DeviceStep | None = None

    # -- per-step metadata ------------------------------------------------------------------
    def begin_step(self, batch) -> None:
        """Resolve this step's slots, tables and chunk metadata and send them to the device."""
        self._step = self._device_step(batch)

    def _device_step(self, batch) -> _DeviceStep:
        bs = self.block_size
        slots, rows, tables, lens, prefills, ptables = [], [], [], [], [], []
        for chunk, begin, end in batch.iter_spans():
            state, table, stop = self._writable_blocks(chunk)
            pos = np.arange(chunk.start_pos, stop)
            slots.append(np.asarray(table, dtype=np.int64)[pos // bs] * bs + pos % bs)
            if chunk.num_tokens == 1:
                rows.append(begin)
                tables.append(table)
                lens.append(stop)
            else:
                prefills.append((begin, end, chunk.start_pos, stop))
                ptables.append(table)
            state.written = max(state.written, stop)
        dec = _pad(tables)
        pre = _pad(ptables)
        flat = np.concatenate(slots) if slots else np.zeros(0, dtype=np.int64)
        packed = np.concatenate([flat, np.asarray(rows, dtype=np.int64),
                                 np.asarray(lens, dtype=np.int64), dec.ravel(), pre.ravel()])
        dev = torch.from_numpy(packed).to(self.device)  # the step's one host-to-device copy
        t, b = len(flat), len(rows)
        cut = np.cumsum([t, b, b, dec.size])
        meta = None
        if prefills and self.attention == "triton":
            from forge_plugin_cuda.triton_prefill import prefill_meta

            meta = prefill_meta([p[0] for p in prefills], [p[1] - p[0] for p in prefills],
                                [p[2] for p in prefills], self.spec.head_dim, self.device)
        return _DeviceStep(batch, dev[:cut[0]], dev[cut[0]:cut[1]], dev[cut[2]:cut[3]].view(
            dec.shape), dev[cut[1]:cut[2]], not prefills, prefills,
            dev[cut[3]:].view(pre.shape), meta)

    # -- data path --------------------------------------------------------------------------
    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch, *,
               scale: float, sliding_window: int | None = None,
               logit_softcap: float | None = None) -> torch.Tensor:
        step = self._step
        if step is None or step.batch is not batch:
            # As the paged cache: a missing begin_step() is an engine bug, not something to
            # paper over (rebuilding here would skip its allocation and copy-on-write).
            raise RuntimeError("device-paged KV cache: attend() for a batch begin_step() was "
                               "not called with (the engine calls it once per step)")
        kl, vl = self.k[layer], self.v[layer]  # [NB + 1, BS, KV, D]
        heads, dim = self.spec.num_kv_heads, self.spec.head_dim
        kl.view(-1, heads, dim).index_copy_(0, step.slots, k.to(kl.dtype))
        vl.view(-1, heads, dim).index_copy_(0, step.slots, v.to(vl.dtype))
        opts = {"scale": scale, "sliding_window": sliding_window,
                "logit_softcap": logit_softcap}
        if step.all_decode:  # pure decode step: the kernel's output is the whole answer
            return self._decode(q, kl, vl, step.decode_tables, step.decode_lens, opts)
        out = torch.empty_like(q)  # [T, H, D]
        if len(step.decode_rows):
            res = self._decode(q.index_select(0, step.decode_rows), kl, vl,
                               step.decode_tables, step.decode_lens, opts)
            out.index_copy_(0, step.decode_rows, res)
        if self.attention == "triton":
            from forge_plugin_cuda.triton_prefill import paged_prefill

            return paged_prefill(q, kl, vl, step.prefill_tables, step.prefill_meta, out=out,
                                 **opts)
        bs = self.block_size
        for c, (begin, end, start, stop) in enumerate(step.prefills):
            lo = 0
            if sliding_window is not None:
                lo = max(0, start - sliding_window + 1) // bs * bs  # whole blocks only
            table = step.prefill_tables[c]
            keys = torch_attention.gather_keys(kl, table, lo, stop)
            values = torch_attention.gather_keys(vl, table, lo, stop)
            out[begin:end] = torch_attention.prefill_attention(
                q[begin:end], keys, values, start, lo, expand_kv=self._expand_kv, **opts)
        return out

    def _decode(self, q, kl, vl, tables, lens, opts) -> torch.Tensor:
        if self.attention == "triton":
            from forge_plugin_cuda.triton_decode import paged_decode

            return paged_decode(q, kl, vl, tables, lens, **opts)
        return torch_attention.decode_attention(q, kl, vl, tables, lens,
                                                expand_kv=self._expand_kv, **opts)


def _pad(tables: list[list[int]]) -> np.ndarray:
    """Block tables as one ``[n, width]`` int64 array; short rows padded with block 0 (read
    by no valid position, but a valid index for gathers)."""
    width = max((len(t) for t in tables), default=0)
    out = np.zeros((len(tables), width), dtype=np.int64)
    for i, t in enumerate(tables):
        out[i, :len(t)] = t
    return out
