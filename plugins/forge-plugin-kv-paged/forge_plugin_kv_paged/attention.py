"""Decode attention over paged keys/values: :func:`paged_decode`.

One query token per sequence, keys and values read **in place** through each sequence's block
table (no gather), float32, exact softmax, sliding window and logit soft-capping, grouped-query
attention (query head ``h`` reads kv head ``h // groups``). Two implementations:

* ``c`` (``_paged_attn``, compiled at install time with the machine's compiler, -O3
  -march=native): split-K over chunks of 128 positions per (sequence, kv head), run on the
  OpenMP threads, merged in a fixed order: a row's bits depend neither on its batch nor on
  the thread count, and one long sequence still uses every thread.
* ``numba`` (fallback: no compiler at install time, head_dim not a multiple of 16):
  :mod:`forge_plugin_kv_paged.attention_numba`, imported only then (numba costs ~65 MB of
  resident memory and start-up time).

:func:`write_rows` stores a step's new keys/values of one layer (one compiled call).

Prefill chunks (and decode for dtypes these kernels cannot read, bf16/fp16) gather the
sequence's blocks and run the kernel's reference
:func:`~forge_kernel.engine.attention.grouped_attention`, whose semantics both follow: the query
at position ``p`` sees keys at positions ``<= p``; with ``sliding_window=w`` only ``> p - w``;
with ``logit_softcap=c`` scores become ``c * tanh(s / c)`` before the softmax.
"""

from __future__ import annotations

import numpy as np
import torch

try:  # built at install time; absent when no compiler was available
    from forge_plugin_kv_paged import _paged_attn
except ImportError:  # pragma: no cover - depends on the install
    _paged_attn = None

PARALLEL_MIN_WORK = 1 << 20
"""Multiply-adds below which one thread decodes the whole step: waking the thread pool costs
more than it saves for short contexts (and far more on a busy machine)."""


def kernel_for(head_dim: int) -> str:
    """``"c"`` or ``"numba"``: which kernel :func:`paged_decode` runs for ``head_dim``."""
    return "c" if _paged_attn is not None and head_dim % 16 == 0 else "numba"


def paged_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                 tables: np.ndarray, lens: np.ndarray, *, scale: float,
                 sliding_window: int | None, logit_softcap: float | None,
                 parallel: bool | None = None) -> torch.Tensor:
    """Single-token attention for ``B`` sequences: ``q [B, H, D]`` float32 over the blocks of
    ``k_cache``/``v_cache [num_blocks, block_size, KV, D]`` (float32, contiguous) listed in
    ``tables [B, M]`` (int32), the first ``lens[b]`` (int32) positions of each (the query is at
    position ``lens[b] - 1``). ``parallel`` forces the threaded (at least 2 threads) or the
    serial kernel (both give bit-identical rows); ``None`` uses torch's thread count when the
    step has enough work. Returns ``[B, H, D]``."""
    batch, heads, dim = q.shape
    if k_cache.dtype != torch.float32 or v_cache.dtype != torch.float32 \
            or q.dtype != torch.float32:
        raise TypeError(f"paged_decode reads float32, got q {q.dtype}, keys {k_cache.dtype}, "
                        f"values {v_cache.dtype}")
    if k_cache.shape != v_cache.shape or k_cache.shape[3] != dim or heads % k_cache.shape[2] \
            or tables.shape[0] != batch or lens.shape != (batch,):
        raise ValueError(f"paged_decode: q {tuple(q.shape)}, cache {tuple(k_cache.shape)}, "
                         f"tables {tables.shape}, lens {lens.shape} do not fit together")
    window = int(sliding_window or 0)
    if kernel_for(dim) == "numba":
        from forge_plugin_kv_paged.attention_numba import paged_decode_numba

        return paged_decode_numba(q, k_cache, v_cache, tables, lens, scale=scale, window=window,
                                  softcap=float(logit_softcap or 0.0), parallel=parallel)
    if not (k_cache.is_contiguous() and v_cache.is_contiguous()):
        raise ValueError("paged_decode: the key/value cache must be contiguous")
    q = q.contiguous()
    out = torch.empty_like(q)
    threads = 1 if parallel is False else torch.get_num_threads()
    if parallel:
        threads = max(2, threads)
    # tables/lens go in as arrays: the extension checks they are C-contiguous int32 itself
    _paged_attn.decode(q.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), tables, lens,
                       out.data_ptr(), heads, k_cache.shape[2], dim, k_cache.shape[1],
                       k_cache.shape[0], float(scale), window, float(logit_softcap or 0.0),
                       threads, 0 if parallel else PARALLEL_MIN_WORK)
    return out


def write_rows(k_cache: torch.Tensor, v_cache: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               slots: torch.Tensor) -> None:
    """Store ``k``/``v [T, KV, D]`` at flat rows ``slots [T]`` (int64) of one layer's
    ``k_cache``/``v_cache [num_blocks, block_size, KV, D]``: one compiled call for float32
    contiguous tensors (the per-layer decode write), ``index_copy_`` otherwise."""
    rows = k_cache.shape[0] * k_cache.shape[1]
    if _paged_attn is not None and k_cache.dtype == k.dtype == v.dtype == torch.float32 \
            and k.is_contiguous() and v.is_contiguous() and k_cache.is_contiguous() \
            and v_cache.is_contiguous() and slots.dtype == torch.int64 \
            and k.shape == v.shape == (len(slots), *k_cache.shape[2:]):
        _paged_attn.write(k_cache.data_ptr(), v_cache.data_ptr(), k.data_ptr(), v.data_ptr(),
                          slots.data_ptr(), len(slots), k.shape[1] * k.shape[2], rows)
        return
    heads, dim = k_cache.shape[2], k_cache.shape[3]
    k_cache.view(rows, heads, dim).index_copy_(0, slots, k.to(k_cache.dtype))
    v_cache.view(rows, heads, dim).index_copy_(0, slots, v.to(v_cache.dtype))
