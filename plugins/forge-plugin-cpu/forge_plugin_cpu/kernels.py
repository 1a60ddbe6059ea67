"""numba kernels for the int8 weights: the fallback products (no compiled VNNI kernel).

Weights are int8 ``q [N, K]`` with one float32 scale per group of ``2**shift`` consecutive
columns (``scale [N, K >> shift]``), shift 5 (32 columns), 4 (16 columns, Q6_K) or one scale per
row. Decode is memory-bandwidth bound: each token streams every weight once. The inner loop
``acc += q[k] * x[k] * scale[k >> SHIFT]`` vectorizes to AVX-512 under ``fastmath`` only when
``SHIFT`` is a compile-time constant (a runtime shift made the LM head 6x slower), hence one
kernel per group size. Each (token, row) dot product runs the same loop whatever the number of
tokens, so results are row invariant.
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


def set_threads(threads: int) -> None:
    """numba's thread count for these kernels (at most its configured maximum)."""
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


GEMM_BY_SHIFT = {5: gemm_g32, 4: gemm_g16}
"""Group-size shift -> decode kernel; any other shift means one scale per row (:func:`gemm_row`)."""
