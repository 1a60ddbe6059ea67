"""Plain numpy decoders of the formats in :mod:`formats`, written from the same layout notes as
the kernels (see :mod:`kernels_legacy`, :mod:`kernels_k`). Tests check them against gguf-py's
dequantizers, so a layout misunderstanding would have to be made twice to go unnoticed."""

from __future__ import annotations

import numpy as np


def _f16(blocks: np.ndarray, offset: int) -> np.ndarray:
    return blocks[:, offset:offset + 2].copy().view(np.float16).astype(np.float32)[:, 0]


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """16 bytes -> 32 values: low nibbles are elements 0..15, high ones 16..31."""
    return np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.int32)


def _high_bits(qh: np.ndarray) -> np.ndarray:
    word = qh.copy().view("<u4").astype(np.int64)  # [n, 1]: broadcasts against the 32 shifts
    return ((word >> np.arange(32)) & 1).astype(np.int32)


def _scale_min_k4(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = s.astype(np.int32)
    sc = np.empty((s.shape[0], 8), np.int32)
    mn = np.empty_like(sc)
    sc[:, :4] = s[:, 0:4] & 63
    mn[:, :4] = s[:, 4:8] & 63
    sc[:, 4:] = (s[:, 8:12] & 15) | ((s[:, 0:4] >> 6) << 4)
    mn[:, 4:] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc, mn


def _k_nibbles(qs: np.ndarray) -> np.ndarray:
    """128 bytes -> 256 low-4-bit levels: chunk c holds 64c+l (low) and 64c+32+l (high)."""
    q = qs.reshape(-1, 4, 32).astype(np.int32)
    return np.concatenate([q & 15, q >> 4], axis=2).reshape(-1, 256)


def dequantize(data: np.ndarray, qtype: str) -> np.ndarray:
    """Float32 values of ``data`` (uint8 ``[rows, row_bytes]`` of ``qtype`` blocks), flattened."""
    sizes = {"Q8_0": 34, "Q4_0": 18, "Q5_0": 22, "Q5_1": 24, "Q4_K": 144, "Q5_K": 176,
             "Q6_K": 210}
    b = np.ascontiguousarray(data).reshape(-1, sizes[qtype])
    if qtype == "Q8_0":
        y = _f16(b, 0)[:, None] * b[:, 2:].view(np.int8).astype(np.float32)
    elif qtype == "Q4_0":
        y = _f16(b, 0)[:, None] * (_nibbles(b[:, 2:]) - 8)
    elif qtype == "Q5_0":
        y = _f16(b, 0)[:, None] * ((_nibbles(b[:, 6:]) | (_high_bits(b[:, 2:6]) << 4)) - 16)
    elif qtype == "Q5_1":
        q = _nibbles(b[:, 8:]) | (_high_bits(b[:, 4:8]) << 4)
        y = _f16(b, 0)[:, None] * q + _f16(b, 2)[:, None]
    elif qtype in ("Q4_K", "Q5_K"):
        sc, mn = _scale_min_k4(b[:, 4:16])
        if qtype == "Q4_K":
            q = _k_nibbles(b[:, 16:])
        else:
            qh = b[:, 16:48].astype(np.int32)  # [n, 32]
            bits = np.stack([(qh >> s) & 1 for s in range(8)], axis=1)  # [n, 8, 32]
            q = _k_nibbles(b[:, 48:]) | (bits.reshape(-1, 256) << 4)
        scale = (_f16(b, 0)[:, None] * sc).repeat(32, axis=1)
        offset = (_f16(b, 2)[:, None] * mn).repeat(32, axis=1)
        y = scale * q - offset
    elif qtype == "Q6_K":
        ql = b[:, :128].reshape(-1, 2, 64).astype(np.int32)
        qh = b[:, 128:192].reshape(-1, 2, 32).astype(np.int32)
        low = np.concatenate([ql[:, :, :32] & 15, ql[:, :, 32:] & 15,
                              ql[:, :, :32] >> 4, ql[:, :, 32:] >> 4], axis=2)
        high = np.concatenate([(qh >> s) & 3 for s in (0, 2, 4, 6)], axis=2)
        q = (low | (high << 4)).reshape(-1, 256) - 32
        sc = b[:, 192:208].view(np.int8).astype(np.float32)
        y = _f16(b, 208)[:, None] * sc.repeat(16, axis=1) * q
    else:
        raise ValueError(f"no reference decoder for {qtype}")
    return y.astype(np.float32).reshape(-1)
