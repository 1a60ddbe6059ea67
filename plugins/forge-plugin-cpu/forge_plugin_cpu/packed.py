"""Weights in the VNNI kernel's interleaved forms (``_qgemm.c``), each lossless vs its GGUF type.

The kernel chains the ``vpdpbusd`` of up to 8 column steps into one int32 accumulator whose lane
``i`` then holds block ``i``'s exact dot product; for that, the columns of every row are stored
in the order of :func:`interleave_order` (the kernel puts the activations in the same order).

* :class:`Q8Matrix` (forms 0, 1): int8 levels + 128 as bytes; float16 ``d`` per 32 columns
  (Q8_0, Q4_0, Q5_0 in mixed fusions, re-quantized types) or float32 per 16 (Q6_K ``d * sc``).
* :class:`Q5Matrix` (form 2): Q5_0 at 5 bits, per 64-column step 32 bytes of nibbles (byte
  ``j``: position ``j`` low, ``j + 32`` high) and 8 of fifth bits; 44 instead of 68 bytes per 64
  weights.
* :class:`Q4KMatrix` (form 3): Q4_K as it is, nibbles as Q5 without the fifth bits and per row
  ``sc, m`` (one byte each per 32 columns) then ``d, dmin`` (float16 per 256):
  ``w = d * sc * level - dmin * m``. 4.6 instead of 8.5 bits per weight, and no re-quantization.
* :class:`Q6KMatrix` (form 4): Q6_K as it is, nibbles then 16 bytes of high 2-bit pairs per step
  and per row ``sc`` (int8 per 16 columns) then ``d`` (float16 per 256): 6.6 instead of 10 bits
  per weight, the same scales ``d * sc`` and results as the int8 form.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import torch

from forge_plugin_cpu.quantize import GROUP_SHIFT, Int8Matrix, concat_rows, stored_blocks, to_int8

if TYPE_CHECKING:
    from forge_kernel.interfaces.loader import WeightTensor

FORM_I8_32, FORM_I8_16, FORM_Q5, FORM_Q4K, FORM_Q6K = 0, 1, 2, 3, 4


@lru_cache(maxsize=32)
def interleave_order(cols: int, block_cols: int) -> np.ndarray:
    """Natural column of each stored position ``[cols]`` (as ``quantize_row`` in ``_qgemm.c``).

    Groups of ``g`` 64-column steps (8, or 4 for 16-column blocks, then 4, 2, 1 for the rest)
    hold ``B = 16 * g * 4 / block_cols`` blocks; lane ``i`` of step ``s`` (4 columns) takes chunk
    ``s * 16 / B + i // B`` of block ``i % B``."""
    chunks = block_cols // 4
    parts, col0 = [], 0
    while col0 < cols:
        g = 8 if block_cols == 32 else 4
        while g > (cols - col0) // 64:
            g //= 2
        blocks = g * 16 // chunks
        s, lane = np.arange(g)[:, None], np.arange(16)[None, :]
        start = col0 + (lane % blocks) * block_cols + 4 * (s * (16 // blocks) + lane // blocks)
        parts.append((start[:, :, None] + np.arange(4)).reshape(-1))
        col0 += 64 * g
    order = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    order.flags.writeable = False
    return order


def _natural(stored: np.ndarray, cols: int, block_cols: int) -> np.ndarray:
    """Stored-order values ``[rows, cols]`` back in natural column order."""
    out = np.empty_like(stored)
    out[:, interleave_order(cols, block_cols)] = stored
    return out


def _nibbles(u: np.ndarray) -> np.ndarray:
    """Levels 0..15 ``[rows, steps, 64]`` -> ``[rows, steps, 32]`` bytes (j low, j + 32 high)."""
    return (u[:, :, :32] & 0x0F) | ((u[:, :, 32:] & 0x0F) << 4)


def _unnibble(nib: np.ndarray) -> np.ndarray:
    return np.concatenate([nib & 0x0F, nib >> 4], axis=2)


@dataclass(slots=True, weakref_slot=True)
class PackedMatrix:
    """``packed [N, K / 64 * step bytes]`` uint8 in stored order and the form's ``scale``."""

    packed: torch.Tensor
    scale: torch.Tensor
    cols: int

    form = -1
    block_cols = 32

    @property
    def shape(self) -> tuple[int, int]:
        return (self.packed.shape[0], self.cols)

    @property
    def nbytes(self) -> int:
        """Bytes read when the whole matrix is streamed once."""
        return self.packed.numel() + self.scale.numel() * self.scale.element_size()

    def rows(self, begin: int, end: int) -> PackedMatrix:
        """Rows ``begin:end`` as a view."""
        return type(self)(self.packed[begin:end], self.scale[begin:end], self.cols)

    def take(self, ids: torch.Tensor) -> PackedMatrix:
        """The rows ``ids`` (a copy): an embedding lookup."""
        return type(self)(self.packed[ids], self.scale[ids], self.cols)

    def levels(self) -> torch.Tensor:
        """Integer levels ``[N, K]`` in natural column order (int8)."""
        raise NotImplementedError

    def to_dtype(self, dtype: torch.dtype) -> torch.Tensor:
        """The dequantized matrix ``[N, K]`` in ``dtype`` (lookups, test references)."""
        rows = self.packed.shape[0]
        groups = self.cols // self.block_cols
        w = self.levels().view(rows, groups, self.block_cols).float() * \
            self.scale.float()[:, :, None]
        return w.view(rows, self.cols).to(dtype)


@dataclass(slots=True)
class Q8Matrix(PackedMatrix):
    """int8 levels ``[N, K]`` stored + 128; ``scale [N, K/32]`` float16 or ``[N, K/16]`` float32."""

    @property
    def form(self) -> int:
        return FORM_I8_16 if self.scale.dtype == torch.float32 else FORM_I8_32

    @property
    def block_cols(self) -> int:
        return self.cols // self.scale.shape[1]

    def levels(self) -> torch.Tensor:
        stored = (self.packed.numpy() ^ 0x80).view(np.int8)
        return torch.from_numpy(_natural(stored, self.cols, self.block_cols))


@dataclass(slots=True)
class Q5Matrix(PackedMatrix):
    """``packed [N, K / 64 * 40]`` (Q5_0 at 5 bits) and ``scale [N, K / 32]`` float16."""

    form = FORM_Q5

    def levels(self) -> torch.Tensor:
        rows = self.packed.shape[0]
        steps = self.packed.numpy().reshape(rows, -1, 40)
        fifth = np.unpackbits(steps[:, :, 32:], axis=2, bitorder="little")
        u = _unnibble(steps[:, :, :32]).astype(np.int16) + 16 * fifth.astype(np.int16) - 16
        return torch.from_numpy(_natural(u.reshape(rows, self.cols).astype(np.int8), self.cols, 32))


@dataclass(slots=True)
class Q4KMatrix(PackedMatrix):
    """``packed [N, K / 64 * 32]`` nibbles; ``scale [N, K/16 + K/64]`` uint8: ``sc [K/32]``,
    ``m [K/32]``, ``d [K/256]`` float16, ``dmin [K/256]`` float16."""

    form = FORM_Q4K

    def levels(self) -> torch.Tensor:
        rows = self.packed.shape[0]
        u = _unnibble(self.packed.numpy().reshape(rows, -1, 32)).reshape(rows, self.cols)
        return torch.from_numpy(_natural(u.astype(np.int8), self.cols, 32))

    def to_dtype(self, dtype: torch.dtype) -> torch.Tensor:
        # as ggml: (d * sc) * level - dmin * m, in float32
        rows, nb, sb = self.packed.shape[0], self.cols // 32, self.cols // 256
        s = self.scale.numpy()
        sc, m = s[:, :nb].astype(np.float32), s[:, nb:2 * nb].astype(np.float32)
        d = np.ascontiguousarray(s[:, 2 * nb:2 * nb + 2 * sb]).view(np.float16).astype(np.float32)
        dmin = np.ascontiguousarray(s[:, 2 * nb + 2 * sb:]).view(np.float16).astype(np.float32)
        d, dmin = np.repeat(d, 8, axis=1), np.repeat(dmin, 8, axis=1)  # [rows, nb]
        q = self.levels().numpy().reshape(rows, nb, 32).astype(np.float32)
        w = (d * sc)[:, :, None] * q - (dmin * m)[:, :, None]
        return torch.from_numpy(w.reshape(rows, self.cols)).to(dtype)


@dataclass(slots=True)
class Q6KMatrix(PackedMatrix):
    """``packed [N, K / 64 * 48]``; ``scale [N, K/16 + K/128]`` uint8: ``sc [K/16]`` int8,
    ``d [K/256]`` float16."""

    form = FORM_Q6K
    block_cols = 16

    def levels(self) -> torch.Tensor:
        rows = self.packed.shape[0]
        steps = self.packed.numpy().reshape(rows, -1, 48)
        high = steps[:, :, 32:, None] >> np.array([0, 2, 4, 6], np.uint8)  # [.., 16, 4]
        high = (high & 0x03).transpose(0, 1, 3, 2).reshape(rows, -1, 64)
        u = (_unnibble(steps[:, :, :32]) | (high << 4)).astype(np.int16) - 32
        return torch.from_numpy(_natural(u.reshape(rows, self.cols).astype(np.int8), self.cols, 16))

    def to_dtype(self, dtype: torch.dtype) -> torch.Tensor:
        rows, nb = self.packed.shape[0], self.cols // 16
        s = self.scale.numpy()
        sc = s[:, :nb].view(np.int8).astype(np.float32)
        d = np.ascontiguousarray(s[:, nb:]).view(np.float16).astype(np.float32)
        scale = np.repeat(d, 16, axis=1) * sc  # as ggml: d * sc, then * level
        w = self.levels().numpy().reshape(rows, nb, 16).astype(np.float32) * scale[:, :, None]
        return torch.from_numpy(w.reshape(rows, self.cols)).to(dtype)


def pack_int8(m: Int8Matrix) -> Q8Matrix | None:
    """The stored-order form of an int8 matrix with 32-column float16 or 16-column float32 scales
    and ``K % 64 == 0`` (None otherwise). Reuses ``m.q``'s memory: ``m`` must not be used after."""
    rows, cols = m.q.shape
    if cols % 64 or m.shift not in (4, GROUP_SHIFT) or (m.shift == 4) != (
            m.scale.dtype == torch.float32):
        return None
    q = m.q.numpy().view(np.uint8)
    order = interleave_order(cols, 1 << m.shift)
    step = max(1, (1 << 22) // max(cols, 1))  # bounded temporary: a large table is permuted
    for begin in range(0, rows, step):  # in place, a chunk of rows at a time
        q[begin:begin + step] = q[begin:begin + step, order] ^ 0x80
    return Q8Matrix(torch.from_numpy(q), m.scale, cols)


def pack_q5(m: Int8Matrix) -> Q5Matrix | None:
    """The 5-bit form of an int8 matrix whose levels are all in -16..15 with 32-column float16
    groups and ``K % 64 == 0``; None otherwise."""
    rows, cols = m.q.shape
    if m.shift != GROUP_SHIFT or cols % 64 or m.scale.dtype != torch.float16:
        return None
    q = m.q.numpy()
    if q.size and (q.min() < -16 or q.max() > 15):
        return None
    u = (q[:, interleave_order(cols, 32)].astype(np.int16) + 16).astype(np.uint8)
    u = u.reshape(rows, cols // 64, 64)
    bits = np.packbits((u >> 4) & 1, axis=2, bitorder="little")  # [rows, steps, 8]
    packed = np.concatenate([_nibbles(u), bits], axis=2).reshape(rows, cols // 64 * 40)
    return Q5Matrix(torch.from_numpy(np.ascontiguousarray(packed)), m.scale, cols)


def pack_q4k(weight: WeightTensor) -> Q4KMatrix | None:
    """Q4_K blocks ``[rows, K / 256 * 144]`` in the kernel's form, exactly; None for other data."""
    rows, cols = weight.shape
    blocks = stored_blocks(weight, 256, 144) if weight.qtype == "Q4_K" else None
    if blocks is None:
        return None
    d, dmin = blocks[:, :, 0:2], blocks[:, :, 2:4]
    s = blocks[:, :, 4:16].reshape(rows, -1, 3, 4)
    a, b, c = s[:, :, 0], s[:, :, 1], s[:, :, 2]  # as ggml's get_scale_min_k4
    sc = np.concatenate([a & 0x3F, (c & 0x0F) | ((a >> 2) & 0x30)], axis=-1).reshape(rows, -1)
    mn = np.concatenate([b & 0x3F, (c >> 4) | ((b >> 2) & 0x30)], axis=-1).reshape(rows, -1)
    qs = blocks[:, :, 16:].reshape(rows, -1, 4, 1, 32) >> np.array([0, 4], np.uint8)[:, None]
    levels = (qs & 0x0F).reshape(rows, cols)  # natural order: sub-block 2j low, 2j + 1 high
    u = levels[:, interleave_order(cols, 32)].reshape(rows, cols // 64, 64)
    packed = _nibbles(u).reshape(rows, cols // 2)
    scale = np.concatenate([sc, mn, d.reshape(rows, -1), dmin.reshape(rows, -1)], axis=1)
    return Q4KMatrix(torch.from_numpy(np.ascontiguousarray(packed)),
                     torch.from_numpy(np.ascontiguousarray(scale)), cols)


def pack_q6k(weight: WeightTensor) -> Q6KMatrix | None:
    """Q6_K blocks ``[rows, K / 256 * 210]`` in the kernel's form, exactly; None for other data."""
    rows, cols = weight.shape
    blocks = stored_blocks(weight, 256, 210) if weight.qtype == "Q6_K" else None
    if blocks is None:
        return None
    blocks = blocks.reshape(rows * (cols // 256), 210)
    ql = blocks[:, :128].reshape(-1, 2, 1, 64) >> np.array([0, 4], np.uint8)[:, None]
    qh = blocks[:, 128:192].reshape(-1, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8)[:, None]
    u = (ql & 0x0F).reshape(-1, 256) | ((qh & 0x03).reshape(-1, 256) << 4)  # as ggml, natural
    u = u.reshape(rows, cols)[:, interleave_order(cols, 16)].reshape(rows, cols // 64, 64)
    high = (u >> 4).reshape(rows, cols // 64, 4, 16) << np.array([0, 2, 4, 6], np.uint8)[:, None]
    high = np.bitwise_or.reduce(high, axis=2)  # byte j: positions j, j + 16, j + 32, j + 48
    packed = np.concatenate([_nibbles(u), high], axis=2).reshape(rows, cols // 64 * 48)
    sc = blocks[:, 192:208].reshape(rows, -1)
    d = blocks[:, 208:210].reshape(rows, -1)
    return Q6KMatrix(torch.from_numpy(np.ascontiguousarray(packed)),
                     torch.from_numpy(np.ascontiguousarray(np.concatenate([sc, d], axis=1))),
                     cols)


def to_packed(weight: WeightTensor, lookup: bool = False) -> PackedMatrix | Int8Matrix:
    """The kernel's form of ``weight``: Q4_K / Q6_K native, Q5_0 at 5 bits (``lookup``: rows
    are also looked up as an embedding, so int8), else int8 in stored order; an
    :class:`Int8Matrix` where the kernel cannot take the matrix (``K % 64``, per-row scales)."""
    if not lookup:
        native = pack_q4k(weight) or pack_q6k(weight)
        if native is not None:
            return native
    m = to_int8(weight)
    if weight.qtype == "Q5_0" and not lookup:
        q5 = pack_q5(m)
        if q5 is not None:
            return q5
    return pack_int8(m) or m


def as_q8(m: PackedMatrix) -> Q8Matrix | None:
    """A 5-bit or int8 matrix as :class:`Q8Matrix` (same levels and scales); None for Q4_K."""
    if isinstance(m, Q8Matrix):
        return m
    if isinstance(m, Q5Matrix):
        return pack_int8(Int8Matrix(m.levels(), m.scale, GROUP_SHIFT))
    return None


def concat_packed(parts: list) -> PackedMatrix | Int8Matrix | None:
    """Matrices stacked along rows (one fused projection); a mix of 5-bit and int8 becomes int8.
    None when they cannot share one kernel call (other widths or scale groups, Q4_K in a mix)."""
    if len({p.shape[1] for p in parts}) != 1:
        return None
    if all(isinstance(p, Int8Matrix) for p in parts):
        return concat_rows(parts)
    if any(isinstance(p, Int8Matrix) for p in parts):
        return None
    if len({type(p) for p in parts}) != 1:
        parts = [as_q8(p) for p in parts]
        if any(p is None for p in parts):
            return None
    if len({(p.form, p.scale.shape[1]) for p in parts}) != 1:
        return None
    return type(parts[0])(torch.cat([p.packed for p in parts]),
                          torch.cat([p.scale for p in parts]), parts[0].cols)
