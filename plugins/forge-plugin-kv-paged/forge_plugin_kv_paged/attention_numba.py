"""The numba fallback of :func:`~forge_plugin_kv_paged.attention.paged_decode` (used when the
compiled ``_paged_attn`` extension is absent): one task per (sequence, kv head) serving all of
that kv head's query heads, each key row read once per group, straight from its block. Two
passes (scores with a vectorized dot, then softmax-weighted values) in float32, exact softmax.
Imported only when needed: numba costs ~65 MB of resident memory and start-up time.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch


@numba.njit(fastmath={"reassoc", "nsz", "contract"}, cache=True)
def _dot(a, b):  # pragma: no cover - compiled
    # Reassociation lets LLVM vectorize the reduction (~5x over a scalar loop); the order is
    # fixed by the code, not by the batch, so a row's result never depends on its neighbours.
    s = np.float32(0.0)
    for i in range(a.shape[0]):
        s += a[i] * b[i]
    return s


@numba.njit(cache=True, fastmath=False)
def _attend_row(q, k_cache, v_cache, tables, lens, scale, window, softcap, out, b, kvh):  # pragma: no cover # noqa: E501
    # Every query head of kv head ``kvh`` for sequence ``b``: each key/value row is read once
    # for the whole group (GQA), straight from its block.
    dim = q.shape[2]
    block_size = k_cache.shape[1]
    groups = q.shape[1] // k_cache.shape[2]
    h0 = kvh * groups
    n = lens[b]
    lo = 0
    if window > 0 and n > window:
        lo = n - window
    m = n - lo
    scores = np.empty((groups, m), dtype=np.float32)
    best = np.full(groups, -np.inf, dtype=np.float32)
    for p in range(lo, n):
        kr = k_cache[tables[b, p // block_size], p % block_size, kvh]
        for g in range(groups):
            s = _dot(q[b, h0 + g], kr) * scale
            if softcap > 0.0:
                s = np.float32(math.tanh(s / softcap) * softcap)
            scores[g, p - lo] = s
            if s > best[g]:
                best[g] = s
    inv = np.empty(groups, dtype=np.float32)
    for g in range(groups):
        total = np.float32(0.0)
        for i in range(m):
            e = np.float32(math.exp(scores[g, i] - best[g]))
            scores[g, i] = e
            total += e
        inv[g] = np.float32(1.0) / total
    acc = np.zeros((groups, dim), dtype=np.float32)
    for p in range(lo, n):
        vr = v_cache[tables[b, p // block_size], p % block_size, kvh]
        for g in range(groups):
            w = scores[g, p - lo]
            for d in range(dim):
                acc[g, d] += w * vr[d]
    for g in range(groups):
        for d in range(dim):
            out[b, h0 + g, d] = acc[g, d] * inv[g]


@numba.njit(parallel=True, cache=True, fastmath=False)
def _decode_parallel(q, k_cache, v_cache, tables, lens, scale, window, softcap, out):  # pragma: no cover # noqa: E501
    # q/out: [B, H, D] f32; k_cache/v_cache: [NB, BS, KV, D] f32; tables: [B, M] i32; lens: [B]
    kv_heads = k_cache.shape[2]
    for row in numba.prange(q.shape[0] * kv_heads):
        _attend_row(q, k_cache, v_cache, tables, lens, scale, window, softcap, out,
                    row // kv_heads, row % kv_heads)


@numba.njit(cache=True, fastmath=False)
def _decode_serial(q, k_cache, v_cache, tables, lens, scale, window, softcap, out):  # pragma: no cover # noqa: E501
    kv_heads = k_cache.shape[2]
    for row in range(q.shape[0] * kv_heads):
        _attend_row(q, k_cache, v_cache, tables, lens, scale, window, softcap, out,
                    row // kv_heads, row % kv_heads)


PARALLEL_MIN_WORK = 1 << 20
"""Multiply-adds below which one thread decodes the whole batch (numba's pool is costly to wake)."""


def paged_decode_numba(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                       tables: np.ndarray, lens: np.ndarray, *, scale: float, window: int,
                       softcap: float, parallel: bool | None) -> torch.Tensor:
    """:func:`~forge_plugin_kv_paged.attention.paged_decode` in numba (``window``/``softcap``
    0: none); the threaded and the serial kernel give bit-identical rows. Returns ``[B, H, D]``."""
    qn = q.detach().contiguous().numpy()
    out = np.empty_like(qn)
    if parallel is None:
        batch, heads, dim = qn.shape
        keys = int(np.minimum(lens, window).sum()) if window else int(lens.sum())
        # numba's pool ignores torch's thread count: at --threads 1 it would still wake (and
        # spin) its own threads, at several ms of CPU per call on a busy machine
        parallel = torch.get_num_threads() > 1 and batch * k_cache.shape[2] > 1 \
            and 2 * keys * heads * dim >= PARALLEL_MIN_WORK
    kernel = _decode_parallel if parallel else _decode_serial
    kernel(qn, k_cache.numpy(), v_cache.numpy(), np.ascontiguousarray(tables, dtype=np.int32),
           np.ascontiguousarray(lens, dtype=np.int32), np.float32(scale), window,
           np.float32(softcap), out)
    return torch.from_numpy(out)
