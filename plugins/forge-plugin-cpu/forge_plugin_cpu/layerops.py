"""The cpu backend's :class:`~forge_kernel.interfaces.backend.LayerOps`: fused float32 kernels
for a decoder layer's non-matrix work, in the compiled ``_layerops`` extension.

Why: on Gemma 3 270M one decode token ran ~500 small torch ops outside the matrix products
(6 RMSNorms and 2 RoPEs per layer, residual adds, GELU-tanh * up), ~6 ms of dispatch at one
thread for a few hundred floats each. Here a layer makes 4 calls. The math stays float32; the
results differ from torch's by rounding (the sum of squares is added in another order, GELU-tanh
goes through ``exp``), so only the ``int8`` precision uses them (``exact`` keeps torch's
bit-for-bit arithmetic). Every row runs the same code whatever the batch: batch invariant.

Absent extension (no compiler at install time): :data:`AVAILABLE` is False and the backend
offers no layer ops, so models run their torch code.
"""

from __future__ import annotations

import numpy as np
import torch

try:  # built at install time; absent when no compiler was available
    from forge_plugin_cpu import _layerops
except ImportError:  # pragma: no cover - depends on the install
    _layerops = None

AVAILABLE = _layerops is not None
"""True when the compiled kernels are importable."""

_ACT = {"silu": 0, "gelu_tanh": 1}
_F32 = torch.float32
_NP32 = np.float32


def _empty(*shape: int) -> torch.Tensor:
    # ~half the cost of torch.empty(..., dtype=float32) for decode-sized outputs
    return torch.from_numpy(np.empty(shape, dtype=_NP32))


def _rows(x: torch.Tensor, what: str) -> None:
    """Reject what the kernels cannot read: float32 rows ``[T, D]`` with a contiguous last axis
    (the checks run on every call, so they are kept to a few attribute reads)."""
    if x.dtype is not _F32 or x.dim() != 2 or x.stride(1) != 1:
        raise ValueError(f"cpu layer ops: {what} must be float32 [T, D] with a contiguous last "
                         f"axis, got {x.dtype} {tuple(x.shape)} strides {x.stride()}")


def _weight(w: torch.Tensor | None, dim: int, what: str) -> int:
    """Address of a norm weight ``[dim]`` (0 for None)."""
    if w is None:
        return 0
    if w.dtype is not _F32 or w.dim() != 1 or w.numel() != dim or not w.is_contiguous():
        raise ValueError(f"cpu layer ops: {what} must be contiguous float32 [{dim}], got "
                         f"{w.dtype} {tuple(w.shape)}")
    return w.data_ptr()


def _heads(t: torch.Tensor, rows: int, hd: int, what: str) -> None:
    """``t [rows, heads, hd]``: heads contiguous within a row, rows at any stride."""
    if (t.dtype is not _F32 or t.dim() != 3 or t.shape[0] != rows or t.shape[2] != hd
            or t.stride(2) != 1 or (t.shape[1] > 1 and t.stride(1) != hd)):
        raise ValueError(f"cpu layer ops: {what} must be float32 [{rows}, heads, {hd}] with "
                         f"contiguous heads, got {t.dtype} {tuple(t.shape)} strides {t.stride()}")


class CpuLayerOps:
    """:class:`~forge_kernel.interfaces.backend.LayerOps` on the compiled kernels; ``threads``
    are used only for large steps (prefill), decode rows run on the calling thread."""

    __slots__ = ("threads",)

    def __init__(self, threads: int = 1) -> None:
        if _layerops is None:
            raise RuntimeError("forge_plugin_cpu._layerops is not built (no compiler at "
                               "install time?); reinstall forge-plugin-cpu")
        self.threads = int(threads)

    def rms_norm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        # x: [T, D] -> [T, D]
        _rows(x, "rms_norm input")
        rows, dim = x.shape
        out = _empty(rows, dim)
        _layerops.rms_norm(x.data_ptr(), x.stride(0), _weight(weight, dim, "norm weight"),
                           out.data_ptr(), rows, dim, eps, self.threads)
        return out

    def residual_norm(self, x: torch.Tensor, y: torch.Tensor, y_weight: torch.Tensor | None,
                      weight: torch.Tensor | None,
                      eps: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        # x: [T, D] updated in place, y: [T, D] -> (x, [T, D] or None)
        _rows(y, "residual_norm block output")
        rows, dim = y.shape
        if x.dtype is not _F32 or x.shape != y.shape or not x.is_contiguous():
            raise ValueError(f"cpu layer ops: the residual must be contiguous float32 "
                             f"{tuple(y.shape)}, got {x.dtype} {tuple(x.shape)}")
        out = _empty(rows, dim) if weight is not None else None
        _layerops.residual_norm(x.data_ptr(), y.data_ptr(), y.stride(0),
                                _weight(y_weight, dim, "post-norm weight"),
                                _weight(weight, dim, "norm weight"),
                                out.data_ptr() if out is not None else 0, rows, dim, eps,
                                self.threads)
        return x, out

    def qk_rope(self, q: torch.Tensor, k: torch.Tensor, q_weight: torch.Tensor | None,
                k_weight: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor,
                eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        # q: [T, H, hd], k: [T, KV, hd] (row-strided views of the q/k/v output are fine);
        # cos, sin: [T, 1, hd] -> new contiguous q, k (attention reads them faster)
        rows, heads, hd = q.shape
        kv = k.shape[1]
        _heads(q, rows, hd, "q")
        _heads(k, rows, hd, "k")
        table = rows * hd
        if (cos.dtype is not _F32 or sin.dtype is not _F32 or cos.numel() != table
                or sin.numel() != table or not cos.is_contiguous() or not sin.is_contiguous()):
            raise ValueError(f"cpu layer ops: cos and sin must be contiguous float32 "
                             f"[{rows}, 1, {hd}], got {cos.dtype} {tuple(cos.shape)} and "
                             f"{sin.dtype} {tuple(sin.shape)}")
        q_out, k_out = _empty(rows, heads, hd), _empty(rows, kv, hd)
        _layerops.qk_rope(q.data_ptr(), q.stride(0), heads, k.data_ptr(), k.stride(0), kv, hd,
                          _weight(q_weight, hd, "q norm weight"),
                          _weight(k_weight, hd, "k norm weight"), cos.data_ptr(),
                          sin.data_ptr(), q_out.data_ptr(), k_out.data_ptr(), rows, eps,
                          self.threads)
        return q_out, k_out

    def gated(self, gate: torch.Tensor, up: torch.Tensor, activation: str) -> torch.Tensor:
        # gate, up: [T, N] (rows may be views of one fused [T, 2N] output) -> [T, N]
        act = _ACT.get(activation)
        if act is None:
            raise ValueError(f"cpu layer ops: unknown activation {activation!r} "
                             f"(known: {sorted(_ACT)})")
        _rows(gate, "gate")
        _rows(up, "up")
        if up.shape != gate.shape or up.stride(0) != gate.stride(0):
            raise ValueError(f"cpu layer ops: gate {tuple(gate.shape)} and up "
                             f"{tuple(up.shape)} must have the same shape and row stride")
        rows, n = gate.shape
        out = _empty(rows, n)
        _layerops.gated(gate.data_ptr(), up.data_ptr(), gate.stride(0), out.data_ptr(), rows, n,
                        act, self.threads)
        return out
