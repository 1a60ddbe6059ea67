"""GPTQ-style error-compensating quantization of one linear layer (our implementation of the
published method, in torch float32).

Orientation follows exllamav2: the weight is handled transposed, ``[rows = in_features,
columns = out_features]``, so a "row" is one input feature and a group is a block of input
features sharing one scale per output column.

1. Activation order: rows are permuted by the Hessian diagonal (``H = X^T X`` of the layer's
   inputs), most active first, so the rows that matter most are quantized while the most
   freedom is left to absorb their error.
2. ``H`` is damped (``damp * mean(diag H)`` on the diagonal), inverted through its Cholesky
   factor, and the upper Cholesky factor ``U`` of ``H^-1`` drives the updates: after row ``i``
   is rounded, its error ``(w_i - q_i) / U_ii`` is spread over the rows not yet quantized
   (``W[j] -= U_ij * err_i``), which is the optimal correction under the quadratic loss
   ``tr(D H D^T)`` (Frantar et al., 2022).
3. Each group's scales are found on the error-updated rows just before the group is rounded:
   exllamav2's two-level scheme, a 4-bit per-column scale ``qs`` in 1..16 times a per-group
   fp16 maximum (``scale = qs^2 * qscale_max / 256``), with a small grid search over a shrink
   factor ``p`` that minimises the group's ``|err|^3.5``.
   Rounding (``rint``, half to even) is the same in quantizer and loader, so the packed
   levels decode to exactly the values the error was measured on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from forge_plugin_exl2.qparams import QParams

DAMP = 0.01
"""Relative damping of the Hessian diagonal (GPTQ's default)."""
P_GRID = np.linspace(0.7, 1.2, 11)
"""Shrink factors tried per group (exllamav2 searches 0.7..1.2 too)."""


@dataclass(slots=True)
class PreparedHessian:
    """What every quantization of one layer shares: activation order and the factor of
    ``H^-1`` (permuted), plus the undamped permuted ``H`` for measuring errors."""

    perm: torch.Tensor  # [rows] int64: permuted row k is original input feature perm[k]
    h_perm: torch.Tensor  # [rows, rows] undamped, permuted
    u: torch.Tensor  # [rows, rows] upper Cholesky factor of the damped inverse, permuted


@dataclass(slots=True)
class QuantizedLinear:
    """One layer's quantized form, still unpacked. Rows are in permuted order."""

    qparams: QParams
    perm: torch.Tensor  # [rows] int64
    qweight: torch.Tensor  # [rows, columns] int16 levels 0..2^b-1
    qscale: torch.Tensor  # [groups, columns] int16 in 1..16
    qscale_max: torch.Tensor  # [groups] float16
    groups: list[tuple[int, int]]  # (bits, rows)
    dequant: torch.Tensor  # [rows, columns] float32, permuted rows

    def weight(self) -> torch.Tensor:
        """The dequantized weight in torch order ``[out_features, in_features]``."""
        return self.dequant[torch.argsort(self.perm)].T.contiguous()


def prepare_hessian(hessian: torch.Tensor, act_order: bool = True,
                    damp: float = DAMP) -> PreparedHessian:
    """Order, damp and factor ``hessian`` (``[in, in]``, e.g. ``X^T X / tokens``)."""
    h = hessian.to(torch.float32).clone()
    rows = h.shape[0]
    diag = torch.diagonal(h)
    dead = diag <= 0
    if bool(dead.any()):  # inputs that never fired: any value is free, keep H invertible
        h[dead, dead] = 1.0
    perm = (torch.argsort(torch.diagonal(h), descending=True) if act_order
            else torch.arange(rows))
    h = h[perm][:, perm]
    damped = h.clone()
    extra = damp * float(torch.diagonal(h).mean())
    for _ in range(8):
        damped.diagonal().add_(max(extra, 1e-8))
        chol, info = torch.linalg.cholesky_ex(damped.double())
        if int(info) == 0:
            inv = torch.cholesky_inverse(chol)
            u = torch.linalg.cholesky(inv, upper=True).to(torch.float32)
            return PreparedHessian(perm, h, u)
        extra *= 10  # not positive definite (too little calibration data): damp harder
    raise ValueError("the calibration Hessian is not invertible even with heavy damping; "
                     "use more calibration text")


def _scales(x: np.ndarray, bits: int) -> tuple[np.ndarray, np.float16, np.ndarray]:
    """Per-column scales for the group ``x`` ``[n, columns]``: (qscale int16 1..16,
    qscale_max fp16, float32 scale per column exactly as the packed form decodes it)."""
    maxq = 2**bits - 1
    qzero = (maxq + 1) / 2
    base = (np.abs(x).max(axis=0) + 1e-12) / (maxq / 2)
    top = float(base.max())
    qs = np.clip(np.rint(np.sqrt(base / top) * 16), 1, 16).astype(np.int16)
    smax = (top * P_GRID).astype(np.float16)
    scales = decode_scale(qs[None, :], smax[:, None])
    from forge_plugin_exl2.kernels import grid_errors  # numba: only when quantizing

    errs = grid_errors(np.ascontiguousarray(x.T), scales, P_GRID, qzero, float(maxq))
    best = int(np.argmin(errs))
    return qs, smax[best], scales[best]


def decode_scale(qscale: np.ndarray, qscale_max: np.ndarray) -> np.ndarray:
    """``qs^2 * qscale_max / 256`` in float32: the one formula quantizer and loader share."""
    return (qscale.astype(np.float32) ** 2) * (qscale_max.astype(np.float32) / np.float32(256))


def quantize(weight: torch.Tensor, prep: PreparedHessian, params: QParams,
             gptq: bool = True) -> QuantizedLinear:
    """Quantize ``weight`` ``[out, in]`` with ``params``; ``gptq=False`` rounds to nearest
    (same groups, scales and order, no error feedback)."""
    from forge_plugin_exl2.kernels import gptq_group  # numba: only when quantizing

    w = weight.to(torch.float32).T[prep.perm].contiguous().numpy()  # [rows, columns], permuted
    rows, columns = w.shape
    groups = params.groups(rows)
    qweight = np.empty((rows, columns), dtype=np.int16)
    dequant = np.empty((rows, columns), dtype=np.float32)
    u = prep.u.numpy()
    qscales, qmaxes = [], []
    a = 0
    for bits, n in groups:
        b = a + n
        maxq = 2**bits - 1
        qs, smax, scale = _scales(w[a:b], bits)
        qscales.append(qs)
        qmaxes.append(smax)
        block = np.ascontiguousarray(w[a:b].T)  # [columns, n]: each column's walk contiguous
        q_t = np.empty((columns, n), dtype=np.int16)
        dq_t = np.empty((columns, n), dtype=np.float32)
        err_t = np.empty((columns, n), dtype=np.float32)
        gptq_group(block, scale, (maxq + 1) / 2, float(maxq), np.ascontiguousarray(u[a:b, a:b]),
                   gptq, q_t, dq_t, err_t)
        qweight[a:b], dequant[a:b] = q_t.T, dq_t.T
        if gptq and b < rows:  # the group's errors reach every later row in one product
            w[b:] -= u[a:b, b:].T @ err_t.T
        a = b
    return QuantizedLinear(params, prep.perm, torch.from_numpy(qweight),
                           torch.from_numpy(np.stack(qscales)),
                           torch.from_numpy(np.array(qmaxes, dtype=np.float16)), groups,
                           torch.from_numpy(dequant))


def hessian_error(weight: torch.Tensor, q: QuantizedLinear, prep: PreparedHessian,
                  columns: torch.Tensor | None = None) -> tuple[float, float]:
    """``(tr(D H D^T), tr(W H W^T))`` with ``D = W - Q`` and the undamped ``H``: the summed
    squared output error over the calibration tokens, and the output's own energy. ``columns``
    (output indices) restricts both sums to those outputs: an unbiased estimate at a fraction of
    the ``in^2 * out`` cost."""
    w = weight.to(torch.float32).T[prep.perm]
    d = w - q.dequant
    if columns is not None:
        w, d = w[:, columns], d[:, columns]
    h = prep.h_perm
    err = float(((h @ d) * d).sum())
    energy = float(((h @ w) * w).sum())
    return err, energy
