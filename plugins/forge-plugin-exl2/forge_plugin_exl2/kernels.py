"""numba kernels of the GPTQ inner loop and the per-group scale search.

Within one group every output column is independent (the error of column ``c`` only updates
column ``c`` of later rows), so both kernels run ``prange`` over columns; the sequential part is
the walk over the group's rows. Doing this in torch costs ~10 small tensor ops per row, which
dominated the run time on the 2-core machine.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True, fastmath=False)
def gptq_group(block, scale, qzero, maxq, u, feedback, qout, dqout, errout):  # pragma: no cover
    """Quantize ``block`` ``[cols, n]`` (float32, transposed so each column's walk is
    contiguous; updated in place) row by row.

    ``scale [cols]``; ``u [n, n]`` the group's square of the upper Cholesky factor of H^-1;
    writes levels to ``qout``, dequantized rows to ``dqout`` and the scaled errors
    ``(w - q) / u_ii`` to ``errout`` (all ``[cols, n]``). ``feedback=False`` is plain RTN.
    """
    cols, n = block.shape
    for c in numba.prange(cols):
        s = scale[c]
        for i in range(n):
            w = block[c, i]
            q = min(max(np.rint(w / s) + qzero, 0.0), maxq)
            dq = (q - qzero) * s
            qout[c, i] = np.int16(q)
            dqout[c, i] = dq
            if feedback:
                err = (w - dq) / u[i, i]
                errout[c, i] = err
                for j in range(i + 1, n):
                    block[c, j] -= u[i, j] * err


@numba.njit(parallel=True, cache=True)
def grid_errors(x, base_scale, grid, qzero, maxq):  # pragma: no cover
    """``sum |dequant(quant(x / (base * p))) - x| ^ 3.5`` (exllamav2's norm) for each ``p`` in
    ``grid``; ``x`` is ``[cols, n]`` (transposed), ``base_scale [len(grid), cols]`` holds the
    decoded scales per ``p``."""
    cols, n = x.shape
    out = np.zeros((grid.shape[0], cols), dtype=np.float64)
    for c in numba.prange(cols):
        for k in range(grid.shape[0]):
            s = base_scale[k, c]
            inv = np.float32(1.0) / s
            acc = 0.0
            for i in range(n):
                v = x[c, i]
                q = min(max(np.rint(v * inv) + qzero, 0.0), maxq)
                e = abs((q - qzero) * s - v)
                acc += e * e * e * np.sqrt(e)  # |e|^3.5 without pow()
            out[k, c] = acc
    return out.sum(axis=1)
