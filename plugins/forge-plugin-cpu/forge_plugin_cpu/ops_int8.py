"""Fast path ops on :class:`~forge_plugin_cpu.quantize.Int8Matrix` weights.

* Few rows (decode, T < ``PREFILL_MIN_TOKENS``): numba int8 x float32 kernel, bandwidth bound.
* Many rows (prefill): the int8 matrix is dequantized to bfloat16 on the fly (~0.15 ms for a
  2048 x 640 matrix) and multiplied by oneDNN's bf16 GEMM (AVX512-BF16, ~4x float32 speed).
  Only the int8 form stays resident, so RSS stays ~1.1 byte per parameter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from forge_plugin_cpu.kernels import GEMM_BY_SHIFT, gather_rows, gemm_row
from forge_plugin_cpu.quantize import Int8Matrix

PREFILL_MIN_TOKENS = 8
"""From this many rows on, the bf16 GEMM beats re-streaming int8 rows through numba."""


class Int8Linear:
    """``y = x @ W.T + b`` with block-scaled int8 weights ``W [out, in]``."""

    __slots__ = ("matrix", "bias", "in_features", "out_features", "_kernel", "_q", "_scale")

    def __init__(self, matrix: Int8Matrix, bias: torch.Tensor | None) -> None:
        self.matrix = matrix
        self.bias = bias  # [out] float32 or None
        self.out_features, self.in_features = matrix.q.shape
        # numpy views made once: the decode call path is ~130 calls per token.
        self._kernel = GEMM_BY_SHIFT.get(matrix.shift, gemm_row)
        self._q, self._scale = matrix.q.numpy(), matrix.scale.numpy()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # x: [T, in] -> [T, out] float32
        if x.dim() != 2:
            lead = x.shape[:-1]
            return self(x.reshape(-1, x.shape[-1])).reshape(*lead, self.out_features)
        if x.shape[0] >= PREFILL_MIN_TOKENS:
            w = self.matrix.to_dtype(torch.bfloat16)  # [out, in], temporary
            y = F.linear(x.to(torch.bfloat16), w).to(torch.float32)
        else:
            x = x.to(torch.float32).contiguous()
            y = torch.empty((x.shape[0], self.out_features), dtype=torch.float32)
            self._kernel(self._q, self._scale, x.numpy(), y.numpy())
        if self.bias is not None:
            y.add_(self.bias)
        return y


class Int8Embedding:
    """Row lookup in an int8 table (shared with a tied LM head)."""

    __slots__ = ("matrix", "num_embeddings", "dim")

    def __init__(self, matrix: Int8Matrix) -> None:
        self.matrix = matrix
        self.num_embeddings, self.dim = matrix.q.shape

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        # ids: [T] -> [T, dim] float32
        flat = ids.reshape(-1).to(torch.int64).contiguous()
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.num_embeddings):
            raise IndexError(
                f"token id out of range [0, {self.num_embeddings}) in embedding lookup"
            )
        out = torch.empty((flat.numel(), self.dim), dtype=torch.float32)
        m = self.matrix
        gather_rows(m.q.numpy(), m.scale.numpy(), m.shift, flat.numpy(), out.numpy())
        return out.reshape(*ids.shape, self.dim)
