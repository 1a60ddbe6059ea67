"""numba kernels for the int8 weight-only fast path.

Weights are int8 ``q [N, K]`` with one float32 scale per group of ``2**shift`` consecutive
columns (``scale [N, K >> shift]``), shift 5 (32 columns), 4 (16 columns, Q6_K) or one scale per
row. Decode is memory-bandwidth bound: each token streams every weight once. The inner loop
``acc += q[k] * x[k] * scale[k >> SHIFT]`` vectorizes to AVX-512 under ``fastmath`` only when
``SHIFT`` is a compile-time constant (a runtime shift made the LM head 6x slower), hence one
kernel per group size. They read the Gemma 3 LM head at memory speed on two cores, about twice
what torch's ``_weight_int8pack_mm`` reaches (see docs/performance.md).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_FLAGS = dict(parallel=True, fastmath=True, cache=True, nogil=True)


@njit(**_FLAGS)
def gemm_g32(q, scale, x, out):  # pragma: no cover - compiled
    """``out[t, n] = sum_k q[n, k] * scale[n, k >> 5] * x[t, k]``.

    q: [N, K] int8, scale: [N, K/32] float32, x: [T, K] float32 (T small), out: [T, N]. Each
    weight row is loaded once from memory and reused for all T activations from L1.
    """
    n_rows, k_dim = q.shape
    for n in prange(n_rows):
        qr = q[n]
        sr = scale[n]
        for t in range(x.shape[0]):
            xr = x[t]
            acc = np.float32(0.0)
            for k in range(k_dim):
                acc += np.float32(qr[k]) * xr[k] * sr[k >> 5]
            out[t, n] = acc


@njit(**_FLAGS)
def gemm_g16(q, scale, x, out):  # pragma: no cover - compiled
    """As :func:`gemm_g32` with 16-column groups (Q6_K)."""
    n_rows, k_dim = q.shape
    for n in prange(n_rows):
        qr = q[n]
        sr = scale[n]
        for t in range(x.shape[0]):
            xr = x[t]
            acc = np.float32(0.0)
            for k in range(k_dim):
                acc += np.float32(qr[k]) * xr[k] * sr[k >> 4]
            out[t, n] = acc


@njit(**_FLAGS)
def gemm_row(q, scale, x, out):  # pragma: no cover - compiled
    """As :func:`gemm_g32` with one scale per row (``scale [N, 1]``)."""
    n_rows, k_dim = q.shape
    for n in prange(n_rows):
        qr = q[n]
        s = scale[n, 0]
        for t in range(x.shape[0]):
            xr = x[t]
            acc = np.float32(0.0)
            for k in range(k_dim):
                acc += np.float32(qr[k]) * xr[k]
            out[t, n] = acc * s


@njit(parallel=True, cache=True, nogil=True)
def gather_rows(q, scale, shift, ids, out):  # pragma: no cover - compiled
    """Embedding lookup: ``out[t, k] = q[ids[t], k] * scale[ids[t], k >> shift]`` (a few rows,
    not bandwidth critical, so one kernel serves every group size)."""
    k_dim = q.shape[1]
    for t in prange(ids.shape[0]):
        qr = q[ids[t]]
        sr = scale[ids[t]]
        for k in range(k_dim):
            out[t, k] = np.float32(qr[k]) * sr[k >> shift]


@njit(**_FLAGS)
def dequant_rows_bf16(q, scale, begin, out):  # pragma: no cover - compiled
    """Rows ``begin .. begin + R`` of the matrix as bfloat16 bit patterns, rounded to nearest
    even exactly as ``torch.Tensor.to(torch.bfloat16)`` rounds the float32 product.

    q: [N, G, S] int8 (G groups of S columns), scale: [N, G] float32, out: [R, G, S] uint16.
    Feeding the bf16 GEMM one cache-sized chunk at a time means the weights cross memory once,
    as int8, instead of as a full-size float32 and bfloat16 temporary per call.
    """
    rows, groups, size = out.shape
    for r in prange(rows):
        product = np.empty(size, np.float32)
        bits = product.view(np.uint32)
        for g in range(groups):
            sc = scale[begin + r, g]
            qg = q[begin + r, g]
            for s in range(size):
                product[s] = np.float32(qg[s]) * sc
            for s in range(size):
                b = bits[s]
                out[r, g, s] = np.uint16(
                    (b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1)))
                    >> np.uint32(16))


GEMM_BY_SHIFT = {5: gemm_g32, 4: gemm_g16}
"""Group-size shift -> decode kernel; any other shift means one scale per row (:func:`gemm_row`)."""
