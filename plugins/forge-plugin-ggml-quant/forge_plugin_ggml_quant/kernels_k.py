"""Quantize kernels of the 256-weight k-quant super-blocks: Q4_K, Q5_K, Q6_K.

Layouts (ggml's published formats):

* ``Q4_K`` 144 bytes: f16 ``d``, f16 ``dmin``, 12 bytes of eight 6-bit scales ``sc`` and mins
  ``mn``, 128 nibble bytes. Sub-block ``j`` (32 weights): ``x = d*sc[j]*q - dmin*mn[j]``.
  Scale bytes: ``[j] = sc[j] | (sc[j+4] >> 4) << 6``, ``[j+4] = mn[j] | (mn[j+4] >> 4) << 6``,
  ``[j+8] = sc[j+4] & 15 | (mn[j+4] & 15) << 4`` for ``j < 4``. Nibble byte ``32c + l`` holds
  element ``64c + l`` (low) and ``64c + 32 + l`` (high).
* ``Q5_K`` 176 bytes: as Q4_K plus 32 ``qh`` bytes before the nibbles: bit ``2c`` of ``qh[l]``
  is the fifth bit of element ``64c + l``, bit ``2c + 1`` that of ``64c + 32 + l``.
* ``Q6_K`` 210 bytes: 128 ``ql`` bytes, 64 ``qh`` bytes, 16 int8 scales, f16 ``d``; sixteen
  sub-blocks of 16 with ``x = d*sc[j]*(q - 32)``. In each half ``h`` (128 weights), for
  ``l < 32``: ``ql[64h+l]`` = low nibbles of elements ``l`` and ``l+64``, ``ql[64h+l+32]`` of
  ``l+32`` and ``l+96``; ``qh[32h+l]`` = the top two bits of ``l, l+32, l+64, l+96``.

Sub-block scales come from the searches in :mod:`search`; they are then quantized against the
f16 super-block scale and the levels re-rounded with the scales actually stored.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from forge_plugin_ggml_quant.search import asymmetric_scale, f16_round, round_clamp, symmetric_scale

STEPS = 10


@njit(cache=True, inline="always")
def _six_bit(values, count):
    """f16 super scale and 6-bit integers for non-negative ``values``."""
    top = 0.0
    for j in range(count):
        top = max(top, values[j])
    d = f16_round(top / 63.0)
    ints = np.zeros(count, np.int32)
    if d > 0.0:
        for j in range(count):
            ints[j] = np.int32(round_clamp(values[j] / d, 0.0, 63.0))
    return d, ints


@njit(cache=True)
def _kquant_block(xb, wb, out, halves, b, hi, five_bit):
    scales = np.empty(8, np.float64)
    mins = np.empty(8, np.float64)
    for j in range(8):
        d, m = asymmetric_scale(xb[32 * j:32 * j + 32], wb[32 * j:32 * j + 32], hi, STEPS, True)
        scales[j] = d
        mins[j] = -m
    d, sc = _six_bit(scales, 8)
    dmin, mn = _six_bit(mins, 8)
    halves[b, 0] = d
    halves[b, 1] = dmin
    for j in range(4):
        out[b, 4 + j] = np.uint8((sc[j] & 63) | ((sc[j + 4] >> 4) << 6))
        out[b, 8 + j] = np.uint8((mn[j] & 63) | ((mn[j + 4] >> 4) << 6))
        out[b, 12 + j] = np.uint8((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4))
    levels = np.empty(256, np.int32)
    for j in range(8):
        step = d * sc[j]
        offset = dmin * mn[j]
        for i in range(32 * j, 32 * j + 32):
            levels[i] = np.int32(round_clamp((xb[i] + offset) / step, 0.0, hi)) if step > 0 else 0
    base = 16
    if five_bit:
        for lane in range(32):
            bits = 0
            for c in range(4):
                bits |= ((levels[64 * c + lane] >> 4) & 1) << (2 * c)
                bits |= ((levels[64 * c + 32 + lane] >> 4) & 1) << (2 * c + 1)
            out[b, 16 + lane] = np.uint8(bits)
        base = 48
    for c in range(4):
        for lane in range(32):
            low = levels[64 * c + lane] & 15
            high = levels[64 * c + 32 + lane] & 15
            out[b, base + 32 * c + lane] = np.uint8(low | (high << 4))


@njit(parallel=True, cache=True)
def q4_k(x, w, out, halves):
    for b in prange(x.shape[0]):
        _kquant_block(x[b], w[b], out, halves, b, 15.0, False)


@njit(parallel=True, cache=True)
def q5_k(x, w, out, halves):
    for b in prange(x.shape[0]):
        _kquant_block(x[b], w[b], out, halves, b, 31.0, True)


@njit(parallel=True, cache=True)
def q6_k(x, w, out, halves):
    for b in prange(x.shape[0]):
        xb = x[b]
        wb = w[b]
        sub = np.empty(16, np.float64)
        top = 0.0
        for j in range(16):
            sub[j] = symmetric_scale(xb[16 * j:16 * j + 16], wb[16 * j:16 * j + 16],
                                     -32.0, 31.0, STEPS)
            if abs(sub[j]) > abs(top):
                top = sub[j]
        # The signed largest scale maps to -128 (the int8 range's far end, as ggml's own
        # quantizer does): a tensor that was Q6_K before keeps its exact grid when re-quantized
        # (with top/127 it lost ~200x in MSE on Gemma's dequantized ffn_down tensors).
        d = f16_round(top / -128.0)
        halves[b, 0] = d
        levels = np.empty(256, np.int32)
        for j in range(16):
            sc = np.int32(round_clamp(sub[j] / d, -128.0, 127.0)) if d != 0.0 else 0
            out[b, 192 + j] = np.uint8(sc & 0xFF)
            step = d * sc
            for i in range(16 * j, 16 * j + 16):
                q = round_clamp(xb[i] / step, -32.0, 31.0) if step != 0.0 else 0.0
                levels[i] = np.int32(q) + 32
        for h in range(2):
            e = 128 * h
            for lane in range(32):
                q1 = levels[e + lane]
                q2 = levels[e + lane + 32]
                q3 = levels[e + lane + 64]
                q4 = levels[e + lane + 96]
                out[b, 64 * h + lane] = np.uint8((q1 & 15) | ((q3 & 15) << 4))
                out[b, 64 * h + lane + 32] = np.uint8((q2 & 15) | ((q4 & 15) << 4))
                out[b, 128 + 32 * h + lane] = np.uint8(
                    (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6))
