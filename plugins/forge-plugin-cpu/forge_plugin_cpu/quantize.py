"""Block-wise int8 form of GGUF weights (the fast path's in-memory form).

``w[n, k] = scale[n, k >> shift] * q[n, k]``, q in int8. 32-column groups keep float16 scales
(the GGUF blocks' own ``d``, so still lossless; 1.0625 instead of 1.125 bytes per weight), 16-column
(Q6_K ``d * sc``) and per-row scales float32.

* **Lossless** for the symmetric GGUF types whose levels fit int8: Q8_0, Q5_0, Q4_0 (32-column
  groups, scale = the block's float16 ``d``) and Q6_K (16-column groups, scale = ``d * sc``). The
  scales are read from the block headers and ``q = w / scale`` is integral.
* **Re-quantized** otherwise (Q4_K, Q5_K, Q2_K, Q3_K, Q4_1, Q5_1 have per-block minimums; float
  types): symmetric int8 per 32 columns, ``scale = max|w| / 127``, which adds at most
  ``max|block| / 254`` per weight, ~1/16 of a 4-bit step. Rows not a multiple of 32 long get one
  scale per row.

The exact float32 path stays available as ``precision="exact"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from forge_plugin_cpu.dequant import CHUNK_ELEMENTS, iter_row_chunks
from forge_plugin_cpu.memory import release_file_pages

if TYPE_CHECKING:
    from forge_kernel.interfaces.loader import WeightTensor

GROUP_SHIFT = 5
"""log2 of the group size (32)."""
ROW_SHIFT = 40
"""``k >> ROW_SHIFT == 0`` for every column: one scale per row."""


@dataclass(slots=True, weakref_slot=True)
class Int8Matrix:
    """An int8 matrix with one scale per group of ``2**shift`` columns (float16 for 32-column
    groups, else float32; see :func:`scale_dtype`)."""

    q: torch.Tensor  # [N, K] int8
    scale: torch.Tensor  # [N, K >> shift] (one column when shift == ROW_SHIFT)
    shift: int

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.q.shape)

    @property
    def nbytes(self) -> int:
        """Bytes read when the whole matrix is streamed once."""
        return self.q.numel() + self.scale.numel() * self.scale.element_size()

    def to_dtype(self, dtype: torch.dtype) -> torch.Tensor:
        """The whole dequantized matrix ``[N, K]`` in ``dtype`` (the reference the chunked bf16
        GEMM of :class:`~forge_plugin_cpu.ops_int8.Int8Linear` is tested against)."""
        rows, cols = self.q.shape
        groups = self.scale.shape[1]
        w = self.q.view(rows, groups, cols // groups).to(torch.float32) * \
            self.scale.float()[:, :, None]
        return w.view(rows, cols).to(dtype)


def concat_rows(parts: list[Int8Matrix]) -> Int8Matrix | None:
    """The matrices stacked along their rows (one fused projection), or None when their
    column groups differ (then they cannot share one kernel call)."""
    if len({(p.shift, p.q.shape[1], p.scale.shape[1]) for p in parts}) != 1:
        return None
    return Int8Matrix(torch.cat([p.q for p in parts]), torch.cat([p.scale for p in parts]),
                      parts[0].shift)


def scale_dtype(shift: int) -> torch.dtype:
    """float16 for 32-column groups (what Q8_0/Q5_0/Q4_0 store), float32 otherwise."""
    return torch.float16 if shift == GROUP_SHIFT else torch.float32


def quantize_rows(w: torch.Tensor, shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 of a float32 ``[rows, K]`` block, one scale per ``2**shift`` columns
    (rounded to :func:`scale_dtype` first, so ``q * scale`` is what the kernels compute)."""
    rows, cols = w.shape
    groups = 1 if shift == ROW_SHIFT else cols >> shift
    g = w.view(rows, groups, cols // groups)
    amax = g.abs().amax(dim=2)  # [rows, groups]
    scale = (amax / 127.0).to(scale_dtype(shift))
    scale = torch.where(scale.float() > 0, scale, torch.ones_like(scale))
    q = torch.round(g / scale.float()[:, :, None]).clamp_(-127, 127).to(torch.int8)
    return q.view(rows, cols), scale


# type -> (block columns, block bytes, scale-group shift, offset of float16 d, Q6_K-style scales)
_LOSSLESS = {
    "Q8_0": (32, 34, 5, 0, False),
    "Q5_0": (32, 22, 5, 0, False),
    "Q4_0": (32, 18, 5, 0, False),
    "Q6_K": (256, 210, 4, 208, True),
}


def stored_blocks(weight: WeightTensor, block_cols: int, block_bytes: int) -> np.ndarray | None:
    """``weight.data`` as raw blocks ``[rows, cols / block_cols, block_bytes]`` (a view) when it
    is stored as ``uint8 [rows, row_bytes]`` in that block layout, else None."""
    data = weight.data
    rows, cols = weight.shape
    if getattr(data, "ndim", 0) != 2 or cols % block_cols or str(data.dtype) != "uint8" or \
            data.shape != (rows, cols // block_cols * block_bytes):
        return None
    return np.asarray(data).reshape(rows, cols // block_cols, block_bytes)


def _lossless_spec(weight: WeightTensor):
    """The block layout of a lossless type when ``weight.data`` is ``[rows, row_bytes]``."""
    spec = _LOSSLESS.get(weight.qtype)
    if spec is None or stored_blocks(weight, spec[0], spec[1]) is None:
        return None
    return spec


def _block_scales(raw_rows: np.ndarray, spec) -> torch.Tensor:
    """Per-group float32 scales ``[rows, groups]`` read from raw block bytes ``[rows, bytes]``."""
    _block_cols, block_bytes, _shift, d_at, k_scales = spec
    rows = raw_rows.shape[0]
    raw = np.asarray(raw_rows).reshape(rows, -1, block_bytes)  # [rows, blocks, bytes]
    d = np.ascontiguousarray(raw[:, :, d_at:d_at + 2]).view(np.float16).astype(np.float32)
    if not k_scales:
        return torch.from_numpy(d.reshape(rows, -1))
    sc = np.ascontiguousarray(raw[:, :, 192:208]).view(np.int8).astype(np.float32)  # [.., 16]
    return torch.from_numpy((d * sc).reshape(rows, -1))


def to_int8(weight: WeightTensor) -> Int8Matrix:
    """The int8 form of ``weight``: lossless from the block headers where the type allows,
    else dequantized chunk by chunk and re-quantized per 32 columns."""
    spec = _lossless_spec(weight)
    if spec is not None:
        return _lossless(weight, spec)
    rows, cols = weight.shape
    shift = GROUP_SHIFT if cols % (1 << GROUP_SHIFT) == 0 else ROW_SHIFT
    groups = 1 if shift == ROW_SHIFT else cols >> shift
    q = torch.empty((rows, cols), dtype=torch.int8)
    scale = torch.empty((rows, groups), dtype=scale_dtype(shift))
    for begin, end, block in iter_row_chunks(weight):
        if not torch.isfinite(block).all():
            raise ValueError(f"tensor {weight.name!r}: non-finite values, cannot use int8 weights")
        q[begin:end], scale[begin:end] = quantize_rows(block, shift)
    return Int8Matrix(q, scale, shift)


def _lossless(weight: WeightTensor, spec) -> Int8Matrix:
    rows, cols = weight.shape
    shift = spec[2]
    groups = cols >> shift
    q = torch.empty((rows, cols), dtype=torch.int8)
    scale = torch.empty((rows, groups), dtype=scale_dtype(shift))
    if weight.qtype == "Q8_0":
        return _q8_0_levels(weight, q, scale)
    for begin, end, block in iter_row_chunks(weight):
        s = _block_scales(weight.data[begin:end], spec)  # [rows, groups] float32
        scale[begin:end] = s  # float16 for 32-column groups: exact, s is the blocks' float16 d
        safe = torch.where(s != 0, s, torch.ones_like(s))
        levels = torch.round(block.view(end - begin, groups, cols // groups) / safe[:, :, None])
        if not torch.isfinite(levels).all() or levels.abs().max() > 127:
            raise ValueError(
                f"tensor {weight.name!r}: {weight.qtype} block levels out of int8 range")
        q[begin:end] = levels.view(end - begin, cols).to(torch.int8)
    return Int8Matrix(q, scale, shift)


def _q8_0_levels(weight: WeightTensor, q: torch.Tensor, scale: torch.Tensor) -> Int8Matrix:
    """Q8_0's levels are its blocks' own int8 bytes: copied a chunk of rows at a time, with no
    float32 round trip (the tied 168 M-weight table otherwise peaks ~90 MB higher at load)."""
    rows, cols = weight.shape
    groups = cols // 32
    levels, scales = q.numpy(), scale.numpy()  # [rows, cols] int8, [rows, groups] float16
    step = max(1, CHUNK_ELEMENTS // cols)
    for begin in range(0, rows, step):
        end = min(rows, begin + step)
        raw = np.asarray(weight.data[begin:end]).reshape(end - begin, groups, 34)
        scales[begin:end] = np.ascontiguousarray(raw[:, :, :2]).view(np.float16)[:, :, 0]
        block = np.ascontiguousarray(raw[:, :, 2:]).view(np.int8)  # [n, groups, 32]
        if (block == -128).any():
            raise ValueError(
                f"tensor {weight.name!r}: Q8_0 block levels out of int8 range")
        levels[begin:end] = block.reshape(end - begin, cols)
        release_file_pages(weight.data[begin:end])
    return Int8Matrix(q, scale, GROUP_SHIFT)
