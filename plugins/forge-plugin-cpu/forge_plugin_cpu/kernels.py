"""numba kernels for the int8 weight-only fast path.

Weights are int8 ``q [N, K]`` with one float32 scale per group of ``2**shift`` consecutive
columns (``scale [N, K >> shift]``; ``shift`` large = one scale per row). Decode is
memory-bandwidth bound: each token streams every weight once. The inner loop
``acc += q[k] * x[k] * scale[k >> shift]`` vectorizes to AVX-512 under ``fastmath`` (the scale
becomes a permute, not a per-block horizontal sum), and reads the Gemma 3 LM head at memory
speed on two cores, about twice what torch's ``_weight_int8pack_mm`` reaches
(see docs/performance.md).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def int8_gemm_small(q, scale, shift, x, out):  # pragma: no cover - compiled
    """``out[t, n] = sum_k q[n, k] * scale[n, k >> shift] * x[t, k]`` for a few rows of ``x``.

    q: [N, K] int8, scale: [N, G] float32, x: [T, K] float32, out: [T, N] float32. Each weight
    row is loaded once from memory and reused for all T activations from L1.
    """
    n_rows, k_dim = q.shape
    tokens = x.shape[0]
    for n in prange(n_rows):
        qr = q[n]
        sr = scale[n]
        for t in range(tokens):
            xr = x[t]
            acc = np.float32(0.0)
            for k in range(k_dim):
                acc += np.float32(qr[k]) * xr[k] * sr[k >> shift]
            out[t, n] = acc


@njit(parallel=True, cache=True, nogil=True)
def int8_gather_rows(q, scale, shift, ids, out):  # pragma: no cover - compiled
    """Embedding lookup: ``out[t, k] = q[ids[t], k] * scale[ids[t], k >> shift]``."""
    k_dim = q.shape[1]
    for t in prange(ids.shape[0]):
        qr = q[ids[t]]
        sr = scale[ids[t]]
        for k in range(k_dim):
            out[t, k] = np.float32(qr[k]) * sr[k >> shift]
