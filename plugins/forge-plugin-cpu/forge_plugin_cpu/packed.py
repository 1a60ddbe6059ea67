"""Q5_0 weights kept at 5 bits for the VNNI kernel (``form 50`` in ``_qgemm.c``).

Per 64-column step of a row: 32 bytes of nibbles (byte j: column j in the low nibble, column
j + 32 in the high one), 8 bytes of fifth bits (bit j: column j); the level is the 5-bit value
minus 16, times the block's float16 ``d`` (one per 32 columns, as in the GGUF block). 44 bytes
per 64 weights instead of 68 as int8 + float16 scales: the Gemma 3 270M q/k/v/gate/up matrices
stream 46 instead of 69 MB per decoded token. Lossless: built from the int8 levels of
:func:`~forge_plugin_cpu.quantize.to_int8`, which reads them exactly from the Q5_0 blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from forge_plugin_cpu.quantize import GROUP_SHIFT, Int8Matrix

FORM_Q5 = 50
STEP_BYTES = 40


@dataclass(slots=True, weakref_slot=True)
class Q5Matrix:
    """``packed [N, K / 64 * 40]`` uint8 and ``scale [N, K / 32]`` float16."""

    packed: torch.Tensor
    scale: torch.Tensor
    cols: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.packed.shape[0], self.cols)

    @property
    def nbytes(self) -> int:
        """Bytes read when the whole matrix is streamed once."""
        return self.packed.numel() + self.scale.numel() * self.scale.element_size()

    def rows(self, begin: int, end: int) -> Q5Matrix:
        """Rows ``begin:end`` as a view."""
        return Q5Matrix(self.packed[begin:end], self.scale[begin:end], self.cols)

    def levels(self) -> torch.Tensor:
        """The int8 levels ``[N, K]`` (-16..15)."""
        rows = self.packed.shape[0]
        steps = self.packed.numpy().reshape(rows, -1, STEP_BYTES)
        nib, bits = steps[:, :, :32], steps[:, :, 32:]
        low = np.concatenate([nib & 0x0F, nib >> 4], axis=2)  # [rows, steps, 64]
        fifth = np.unpackbits(bits, axis=2, bitorder="little")
        values = low.astype(np.int16) + 16 * fifth.astype(np.int16) - 16
        return torch.from_numpy(values.reshape(rows, self.cols).astype(np.int8))

    def to_dtype(self, dtype: torch.dtype) -> torch.Tensor:
        """The whole dequantized matrix ``[N, K]`` in ``dtype`` (test reference)."""
        rows = self.packed.shape[0]
        w = self.levels().view(rows, -1, 32).float() * self.scale.float()[:, :, None]
        return w.view(rows, self.cols).to(dtype)


def pack_q5(m: Int8Matrix) -> Q5Matrix | None:
    """The 5-bit form of an int8 matrix whose levels are all in -16..15 with 32-column float16
    groups and ``K % 64 == 0``; None otherwise."""
    rows, cols = m.q.shape
    if m.shift != GROUP_SHIFT or cols % 64 or m.scale.dtype != torch.float16:
        return None
    q = m.q.numpy()
    if q.size and (q.min() < -16 or q.max() > 15):
        return None
    u = (q.astype(np.int16) + 16).astype(np.uint8).reshape(rows, cols // 64, 64)
    nib = (u[:, :, :32] & 0x0F) | ((u[:, :, 32:] & 0x0F) << 4)
    bits = np.packbits((u >> 4) & 1, axis=2, bitorder="little")  # [rows, steps, 8]
    packed = np.concatenate([nib, bits], axis=2).reshape(rows, cols // 64 * STEP_BYTES)
    return Q5Matrix(torch.from_numpy(np.ascontiguousarray(packed)), m.scale, cols)


def concat_q5(parts: list[Q5Matrix]) -> Q5Matrix | None:
    """Stacked along rows (a fused projection), or None when the widths differ."""
    if len({p.cols for p in parts}) != 1:
        return None
    return Q5Matrix(torch.cat([p.packed for p in parts]), torch.cat([p.scale for p in parts]),
                    parts[0].cols)
