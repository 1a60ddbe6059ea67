"""Fast path ops on :class:`~forge_plugin_cpu.quantize.Int8Matrix` weights.

One kernel serves every row count (decode, batched decode, prefill), so a row's output never
depends on how many other rows share the step: greedy outputs are batch invariant.

* ``vnni`` (the compiled ``_qgemm`` extension, AVX512-VNNI): activations quantized per row and
  per 32 columns to int8, exact int32 block dot products (as llama.cpp's Q8_0 path), float32
  block scales, on the stored-order forms of :mod:`~forge_plugin_cpu.packed`. Needs
  ``in_features % 64 == 0`` and 16- or 32-column weight groups.
* ``numba`` (fallback: no compiler at install time, a CPU without VNNI, odd shapes): the int8 x
  float32 kernels of :mod:`~forge_plugin_cpu.kernels`, the same loop for every row, so also row
  invariant; prefill is slower there (no GEMM blocking).
"""

from __future__ import annotations

import numpy as np
import torch

from forge_plugin_cpu.packed import PackedMatrix, pack_int8
from forge_plugin_cpu.quantize import Int8Matrix

try:  # built at install time; absent when no compiler was available
    from forge_plugin_cpu import _qgemm
except ImportError:  # pragma: no cover - depends on the install
    _qgemm = None

VNNI = bool(_qgemm is not None and _qgemm.available())
"""True when the compiled AVX512-VNNI kernel runs on this CPU."""


def kernel_for(matrix: Int8Matrix | PackedMatrix) -> str:
    """``"vnni"`` or ``"numba"``: which kernel multiplies ``matrix`` (packed: always vnni)."""
    if isinstance(matrix, PackedMatrix):
        return "vnni"
    if VNNI and matrix.q.shape[1] % 64 == 0 and matrix.shift in (4, 5):
        return "vnni"
    return "numba"


class Int8Linear:
    """``y = x @ W.T + b`` with block-scaled weights ``W [out, in]``: an :class:`Int8Matrix`
    (numba fallback; converted to the kernel's form when VNNI runs) or a packed form."""

    __slots__ = ("matrix", "bias", "in_features", "out_features", "threads", "kernel", "_fn",
                 "_q", "_scale", "_q_ptr", "_scale_ptr", "_form")

    def __init__(self, matrix: Int8Matrix | PackedMatrix, bias: torch.Tensor | None,
                 threads: int = 1) -> None:
        if isinstance(matrix, Int8Matrix) and kernel_for(matrix) == "vnni":
            matrix = pack_int8(Int8Matrix(matrix.q.clone(), matrix.scale, matrix.shift))
        self.matrix = matrix
        self.bias = bias  # [out] float32 or None
        self.out_features, self.in_features = matrix.shape
        self.threads = int(threads)
        self.kernel = kernel_for(matrix)
        if isinstance(matrix, PackedMatrix):
            self._q = self._fn = self._scale = None
            self._q_ptr, self._scale_ptr = matrix.packed.data_ptr(), matrix.scale.data_ptr()
            self._form = matrix.form
            return
        # Everything the per-call path needs is made once: ~70 calls per decoded token.
        self._q = matrix.q.numpy()
        self._fn = self._scale = None
        if self.kernel == "numba":
            # imported only when needed: numba and llvmlite add ~65 MB of RSS
            from forge_plugin_cpu.kernels import GEMM_BY_SHIFT, gemm_row, set_threads

            set_threads(self.threads)
            self._fn = GEMM_BY_SHIFT.get(matrix.shift, gemm_row)
            # numba has no float16 arithmetic: the fallback gets a float32 copy of the scales
            self._scale = matrix.scale.float().numpy()
        self._q_ptr, self._scale_ptr = matrix.q.data_ptr(), matrix.scale.data_ptr()
        self._form = -1

    def parts(self, sizes: list[int]) -> list[Int8Linear]:
        """Ops for consecutive row ranges of ``sizes`` rows, sharing this op's memory (the
        per-projection views of a fused q/k/v or gate/up op)."""
        if sum(sizes) != self.out_features:
            raise ValueError(f"parts {sizes} do not add up to {self.out_features} rows")
        ops, begin = [], 0
        m = self.matrix
        for size in sizes:
            end = begin + size
            bias = self.bias[begin:end] if self.bias is not None else None
            if isinstance(m, PackedMatrix):
                view = m.rows(begin, end)
            else:
                view = Int8Matrix(m.q[begin:end], m.scale[begin:end], m.shift)
            ops.append(Int8Linear(view, bias, self.threads))
            begin = end
        return ops

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # x: [T, in] -> [T, out] float32
        if x.dim() != 2:
            lead = x.shape[:-1]
            return self(x.reshape(-1, x.shape[-1])).reshape(*lead, self.out_features)
        if x.shape[1] != self.in_features:
            raise ValueError(f"linear: input has {x.shape[1]} features, the weight expects "
                             f"{self.in_features}")
        if x.dtype != torch.float32 or not x.is_contiguous():
            x = x.to(torch.float32).contiguous()
        rows = x.shape[0]
        # Allocating through numpy is ~1 us cheaper per call than torch.empty.
        out = np.empty((rows, self.out_features), dtype=np.float32)
        if rows:
            if self.kernel == "vnni":
                _qgemm.linear(x.data_ptr(), rows, self.in_features, self._q_ptr,
                              self._scale_ptr, self._form, self.out_features,
                              out.ctypes.data, self.threads)
            else:
                self._fn(self._q, self._scale, x.numpy(), out)
        y = torch.from_numpy(out)
        if self.bias is not None:
            y.add_(self.bias)
        return y


class Int8Embedding:
    """Row lookup in an int8 or packed table (shared with a tied LM head)."""

    __slots__ = ("matrix", "num_embeddings", "dim")

    def __init__(self, matrix: Int8Matrix | PackedMatrix) -> None:
        self.matrix = matrix
        self.num_embeddings, self.dim = matrix.shape

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        # ids: [T] -> [T, dim] float32
        flat = ids.reshape(-1).to(torch.int64).contiguous()
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.num_embeddings):
            raise IndexError(
                f"token id out of range [0, {self.num_embeddings}) in embedding lookup"
            )
        m = self.matrix
        if isinstance(m, PackedMatrix):
            return m.take(flat).to_dtype(torch.float32).reshape(*ids.shape, self.dim)
        groups = m.scale.shape[1]
        rows = m.q[flat].view(-1, groups, self.dim // groups).to(torch.float32)
        out = (rows * m.scale[flat].float()[:, :, None]).view(-1, self.dim)
        return out.reshape(*ids.shape, self.dim)
