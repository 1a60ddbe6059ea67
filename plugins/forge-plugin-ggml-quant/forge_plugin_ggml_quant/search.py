"""Per-block scale searches shared by every block format (numba, one block per call).

Every format stores a block as integer levels ``L`` and one or two floats: ``x ~ d * L`` for the
symmetric formats (Q4_0, Q5_0, Q6_K sub-blocks) and ``x ~ d * L + m`` for the asymmetric ones
(Q5_1, Q4_K, Q5_K sub-blocks). Rounding with the scale implied by the block's extreme value is
rarely the best choice: we try a small fan of scales around it, take for each the levels it
rounds to, solve the weighted least-squares ``d`` (and ``m``) for those levels in closed form,
and keep the candidate with the least weighted squared error. ``w`` carries the importance of
each weight (|x|-weighted without an importance matrix, activation statistics with one).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

F16_MIN_NORMAL = 6.103515625e-05
F16_SUBNORMAL_STEP = 5.960464477539063e-08
F16_MAX = 65504.0


@njit(cache=True, inline="always")
def f16_round(x):
    """``x`` rounded to the nearest float16 value (ties to even), returned as a float."""
    a = abs(x)
    if a == 0.0:
        return 0.0
    if a >= F16_MAX:
        return math.copysign(F16_MAX, x)
    if a < F16_MIN_NORMAL:
        step = F16_SUBNORMAL_STEP
    else:
        _, e = math.frexp(a)  # a = m * 2**e with m in [0.5, 1): 11 significant bits below
        step = math.ldexp(1.0, e - 11)
    return np.round(x / step) * step


@njit(cache=True)
def round_clamp(v, lo, hi):
    """Nearest integer level of ``v`` (ties to even, like ``np.round``) within ``[lo, hi]``."""
    q = np.round(v)
    if q < lo:
        return lo
    if q > hi:
        return hi
    return q


@njit(cache=True)
def symmetric_scale(x, w, lo, hi, steps):
    """Best ``d`` for ``x ~ d * L`` with integer ``L`` in ``[lo, hi]`` (``lo = -hi - 1``).

    Candidates map the largest-magnitude value to ``lo`` or to ``hi``, stretched by up to one
    level in ``steps`` increments either way; each is scored with its least-squares ``d``.
    """
    n = x.shape[0]
    imax = 0
    for i in range(n):
        if abs(x[i]) > abs(x[imax]):
            imax = i
    amax = x[imax]
    if amax == 0.0:
        return 0.0
    best_d = amax / lo
    best_err = np.inf
    for side in range(2):
        target = lo if side == 0 else hi
        for k in range(-steps, steps + 1):
            t = target + (k / steps) * (1.0 if target > 0 else -1.0)
            if t == 0.0:
                continue
            inv = t / amax
            sxl = 0.0
            sll = 0.0
            for i in range(n):
                q = round_clamp(x[i] * inv, lo, hi)
                sxl += w[i] * x[i] * q
                sll += w[i] * q * q
            if sll <= 0.0:
                continue
            # err = sum w x^2 - sxl^2 / sll: only the second term depends on the candidate
            err = -sxl * sxl / sll
            if err < best_err:
                best_err = err
                best_d = sxl / sll
    return best_d


@njit(cache=True)
def asymmetric_scale(x, w, hi, steps, nonpositive_offset):
    """Best ``(d, m)`` for ``x ~ d * L + m`` with integer ``L`` in ``[0, hi]``.

    With ``nonpositive_offset`` (K-quants store ``-m`` as an unsigned 6-bit minimum) ``m`` is
    kept at or below zero. Candidates stretch the range ``[min, max]`` over ``hi - 1 .. hi + 1``
    levels; for each, the levels are fixed and ``d, m`` solved by weighted least squares.
    """
    n = x.shape[0]
    lo_v = x[0]
    hi_v = x[0]
    for i in range(n):
        lo_v = min(lo_v, x[i])
        hi_v = max(hi_v, x[i])
    if nonpositive_offset and lo_v > 0.0:
        lo_v = 0.0
    if hi_v == lo_v:
        return 0.0, lo_v
    best_d = (hi_v - lo_v) / hi
    best_m = lo_v
    best_err = np.inf
    for k in range(-steps, steps + 1):
        inv = (hi + k / steps) / (hi_v - lo_v)
        sw = 0.0
        sl = 0.0
        sll = 0.0
        sx = 0.0
        sxl = 0.0
        for i in range(n):
            q = round_clamp((x[i] - lo_v) * inv, 0.0, hi)
            sw += w[i]
            sl += w[i] * q
            sll += w[i] * q * q
            sx += w[i] * x[i]
            sxl += w[i] * x[i] * q
        det = sw * sll - sl * sl
        if det <= 0.0:
            continue
        d = (sw * sxl - sx * sl) / det
        m = (sll * sx - sl * sxl) / det
        if nonpositive_offset and m > 0.0:
            m = 0.0
            d = sxl / sll
        if d < 0.0:
            continue
        err = 0.0
        for i in range(n):
            q = round_clamp((x[i] - m) / d, 0.0, hi) if d > 0.0 else 0.0
            r = d * q + m - x[i]
            err += w[i] * r * r
        if err < best_err:
            best_err = err
            best_d = d
            best_m = m
    return best_d, best_m
