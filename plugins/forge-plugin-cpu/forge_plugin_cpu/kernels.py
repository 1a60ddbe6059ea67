"""numba kernels for the int8 weight-only fast path.

Decode is memory-bandwidth bound: each token streams every weight once. A plain row-parallel
int8 x float32 dot product (weights widened in registers, one float32 scale per output row)
vectorizes to AVX-512 with ``fastmath`` and reads the 168 MB Gemma 3 LM head at ~40 GB/s on two
cores, twice what torch's ``_weight_int8pack_mm`` reaches (see docs/performance.md).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def int8_gemm_small(q, scale, x, out):  # pragma: no cover - compiled
    """``out[t, n] = scale[n] * sum_k q[n, k] * x[t, k]`` for a few rows ``t`` of ``x``.

    q: [N, K] int8, scale: [N] float32, x: [T, K] float32, out: [T, N] float32. Each weight row
    is loaded once from memory and reused for all T activations from L1.
    """
    n_rows, k_dim = q.shape
    tokens = x.shape[0]
    for n in prange(n_rows):
        s = scale[n]
        for t in range(tokens):
            acc = np.float32(0.0)
            for k in range(k_dim):
                acc += np.float32(q[n, k]) * x[t, k]
            out[t, n] = acc * s


@njit(parallel=True, cache=True, nogil=True)
def int8_gather_rows(q, scale, ids, out):  # pragma: no cover - compiled
    """Embedding lookup: ``out[t] = q[ids[t]] * scale[ids[t]]`` as float32."""
    k_dim = q.shape[1]
    for t in prange(ids.shape[0]):
        row = ids[t]
        s = scale[row]
        for k in range(k_dim):
            out[t, k] = np.float32(q[row, k]) * s
