"""Per-output-channel symmetric int8 re-quantization of GGUF weights (the fast path's form).

``w[n, k] ~= scale[n] * q[n, k]`` with ``scale[n] = max_k |w[n, k]| / 127``. This adds one
rounding step on top of the file's own quantization (at most ``scale[n] / 2`` per element); the
exact float32 path stays available as ``precision="exact"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from forge_plugin_cpu.dequant import iter_row_chunks

if TYPE_CHECKING:
    from forge_kernel.interfaces.model import WeightTensor


@dataclass(slots=True, weakref_slot=True)
class Int8Matrix:
    """An int8 matrix with one float32 scale per row."""

    q: torch.Tensor  # [N, K] int8
    scale: torch.Tensor  # [N] float32

    @property
    def nbytes(self) -> int:
        """Bytes read when the whole matrix is streamed once."""
        return self.q.numel() + self.scale.numel() * 4


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8 of a float32 ``[rows, K]`` block."""
    amax = w.abs().amax(dim=1)  # [rows]
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale.to(torch.float32)


def to_int8(weight: WeightTensor) -> Int8Matrix:
    """Dequantize ``weight`` chunk by chunk and re-quantize every row to int8."""
    rows, cols = weight.shape
    q = torch.empty((rows, cols), dtype=torch.int8)
    scale = torch.empty(rows, dtype=torch.float32)
    for begin, end, block in iter_row_chunks(weight):
        if not torch.isfinite(block).all():
            raise ValueError(f"tensor {weight.name!r}: non-finite values, cannot use int8 weights")
        q[begin:end], scale[begin:end] = quantize_rows(block)
    return Int8Matrix(q, scale)
