"""Fast path ops on :class:`~forge_plugin_cpu.quantize.Int8Matrix` weights.

* Few rows (decode, T < ``PREFILL_MIN_TOKENS``): numba int8 x float32 kernel, bandwidth bound.
* Many rows (prefill, batched decode): the int8 matrix is dequantized to bfloat16 one chunk of
  ``CHUNK_ROWS`` output rows at a time into a small reused buffer, and each chunk is multiplied
  by oneDNN's bf16 GEMM (AVX512-BF16, ~4x float32 speed). Only the int8 form stays resident,
  so RSS stays ~1.1 byte per parameter; chunking keeps the 262144-row Gemma LM head from
  materialising a 1.7 GB float32/bf16 temporary per call (580 ms -> 40 ms at 8-16 rows).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from forge_plugin_cpu.kernels import GEMM_BY_SHIFT, dequant_rows_bf16, gather_rows, gemm_row
from forge_plugin_cpu.quantize import Int8Matrix

PREFILL_MIN_TOKENS = 8
"""From this many rows on, the bf16 GEMM beats re-streaming int8 rows through numba."""
CHUNK_ROWS = 4096
"""Output rows dequantized per bf16 GEMM call (4096 x 640 bf16 = 5 MB, measured best of
512..8192 on the Gemma LM head)."""


class Int8Linear:
    """``y = x @ W.T + b`` with block-scaled int8 weights ``W [out, in]``."""

    __slots__ = ("matrix", "bias", "in_features", "out_features", "_kernel", "_q", "_scale",
                 "_q_groups")

    def __init__(self, matrix: Int8Matrix, bias: torch.Tensor | None) -> None:
        self.matrix = matrix
        self.bias = bias  # [out] float32 or None
        self.out_features, self.in_features = matrix.q.shape
        # numpy views made once: the decode call path is ~130 calls per token.
        self._kernel = GEMM_BY_SHIFT.get(matrix.shift, gemm_row)
        self._q, self._scale = matrix.q.numpy(), matrix.scale.numpy()
        groups = self._scale.shape[1]
        self._q_groups = self._q.reshape(self.out_features, groups, self.in_features // groups)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # x: [T, in] -> [T, out] float32
        if x.dim() != 2:
            lead = x.shape[:-1]
            return self(x.reshape(-1, x.shape[-1])).reshape(*lead, self.out_features)
        if x.shape[0] >= PREFILL_MIN_TOKENS:
            y = self._bf16_gemm(x)
        else:
            # ~130 calls per decoded token: skip no-op conversions, allocate through numpy
            # (torch.empty + .numpy() costs ~2.5 us, np.empty + from_numpy ~0.9 us).
            if x.dtype != torch.float32 or not x.is_contiguous():
                x = x.to(torch.float32).contiguous()
            out = np.empty((x.shape[0], self.out_features), dtype=np.float32)
            self._kernel(self._q, self._scale, x.numpy(), out)
            y = torch.from_numpy(out)
        if self.bias is not None:
            y.add_(self.bias)
        return y

    def _bf16_gemm(self, x: torch.Tensor) -> torch.Tensor:
        # x: [T, in] -> [T, out] float32, weights dequantized CHUNK_ROWS output rows at a time
        xb = x.to(torch.bfloat16)
        rows, groups, size = self._q_groups.shape
        chunk = min(CHUNK_ROWS, rows)
        buffer = torch.empty((chunk, groups, size), dtype=torch.int16)  # bf16 bit patterns
        bits = buffer.numpy().view(np.uint16)
        y = torch.empty((x.shape[0], rows), dtype=torch.float32)
        for begin in range(0, rows, chunk):
            end = min(rows, begin + chunk)
            dequant_rows_bf16(self._q_groups, self._scale, begin, bits[: end - begin])
            w = buffer[: end - begin].view(torch.bfloat16).view(end - begin, self.in_features)
            y[:, begin:end] = F.linear(xb, w)
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
