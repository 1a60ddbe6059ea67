"""Building blocks shared by every architecture: RMSNorm, rotary embedding tables, gated MLP.

Everything works on flat activations ``[T, ...]`` (all chunks of a step concatenated), in float32
or the backend's compute dtype. Numerics follow Hugging Face transformers so float32 logits match
its reference implementations to rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``x / rms(x) * weight`` over the last axis, computed in float32 and cast back.

    Canonical norm weights already include Gemma's ``+1``, so one formula serves every family.
    """
    if x.dtype == torch.float32:
        # Same arithmetic in one call (bit-identical on CPU, fewer dispatches per layer).
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    xf = x.float()
    normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (normed * weight).to(x.dtype)


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": F.silu,
    # Gemma's ``gelu_pytorch_tanh``.
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
}


class TorchLayerOps:
    """:class:`~forge_kernel.interfaces.backend.LayerOps` in torch: what a model runs when its
    backend offers no fused kernels. The arithmetic of the unfused forward pass, op for op (the
    ``exact`` reference path depends on it), and nothing is updated in place."""

    __slots__ = ()

    def rms_norm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        return rms_norm(x, weight, eps)

    def residual_norm(self, x: torch.Tensor, y: torch.Tensor, y_weight: torch.Tensor | None,
                      weight: torch.Tensor | None,
                      eps: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        # x, y: [T, D] -> (x + norm(y) [T, D], rms_norm of it or None)
        x = x + (rms_norm(y, y_weight, eps) if y_weight is not None else y)
        return x, rms_norm(x, weight, eps) if weight is not None else None

    def qk_rope(self, q: torch.Tensor, k: torch.Tensor, q_weight: torch.Tensor | None,
                k_weight: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor,
                eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        # q: [T, H, D], k: [T, KV, D], cos/sin: [T, 1, D]
        if q_weight is not None:
            q = rms_norm(q, q_weight, eps)
        if k_weight is not None:
            k = rms_norm(k, k_weight, eps)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin)

    def gated(self, gate: torch.Tensor, up: torch.Tensor, activation: str) -> torch.Tensor:
        return ACTIVATIONS[activation](gate) * up


TORCH_OPS = TorchLayerOps()


class GatedMLP:
    """``down(act(gate(x)) * up(x))``: the feed-forward of Llama, Qwen and Gemma; ``ops`` (a
    backend's :class:`~forge_kernel.interfaces.backend.LayerOps`) computes ``act(g) * u``."""

    __slots__ = ("gate", "up", "down", "activation", "gate_up", "ops")

    def __init__(self, gate: Callable, up: Callable, down: Callable, activation: str,
                 gate_up=None, ops=None) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown MLP activation {activation!r} (known: {sorted(ACTIVATIONS)})")
        self.gate, self.up, self.down = gate, up, down
        self.activation = activation
        self.gate_up = gate_up
        """Optional :class:`~forge_plugin_models.fused.FusedProjection` of gate and up."""
        self.ops = ops or TORCH_OPS

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # x: [T, hidden] -> [T, intermediate] -> [T, hidden]
        if self.gate_up is not None and self.gate_up.intact(self.gate, self.up):
            g, u = self.gate_up(x)
        else:
            g, u = self.gate(x), self.up(x)
        return self.down(self.ops.gated(g, u, self.activation))


def rope_inv_freq(
    head_dim: int,
    base: float,
    scaling: Mapping[str, Any] | None = None,
    freq_factors: torch.Tensor | None = None,
) -> torch.Tensor:
    """Inverse frequencies ``[head_dim // 2]`` (float32), exactly as transformers computes them.

    ``scaling`` follows the Hugging Face ``rope_scaling`` dict (``rope_type``/``type`` of
    ``default``, ``linear`` or ``llama3``). ``freq_factors`` is llama.cpp's ``rope_freqs.weight``
    (Llama 3.1 GGUF files store the llama3 scaling precomputed as per-frequency divisors); when
    given, it replaces a ``llama3`` entry in ``scaling``.
    """
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64).to(torch.float32) / head_dim
    inv_freq = 1.0 / (base**exponent)
    kind = "default"
    if scaling:
        kind = str(scaling.get("rope_type") or scaling.get("type") or "default")
    if kind == "linear":
        inv_freq = inv_freq / float(scaling["factor"])
    elif kind == "llama3":
        # A GGUF's rope_freqs already holds the llama3 scaling: never apply it twice.
        if freq_factors is None:
            inv_freq = _llama3_scale(inv_freq, scaling)
    elif kind not in ("default", "none"):
        raise ValueError(
            f"unsupported rope scaling type {kind!r} (supported: default, linear, llama3)"
        )
    if freq_factors is not None:
        if freq_factors.numel() != inv_freq.numel():
            raise ValueError(
                f"rope_freqs has {freq_factors.numel()} entries, expected {inv_freq.numel()}"
            )
        inv_freq = inv_freq / freq_factors.reshape(-1).float()
    return inv_freq


def _llama3_scale(inv_freq: torch.Tensor, scaling: Mapping[str, Any]) -> torch.Tensor:
    """Llama 3.1 frequency-dependent scaling (``_compute_llama3_parameters`` in transformers)."""
    factor = float(scaling["factor"])
    low = float(scaling.get("low_freq_factor", 1.0))
    high = float(scaling.get("high_freq_factor", 4.0))
    old_len = float(scaling.get("original_max_position_embeddings", 8192))
    low_wavelen, high_wavelen = old_len / low, old_len / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(is_medium, smoothed, scaled)


class RotaryTable:
    """Cached rotary rows ``[positions, head_dim]`` for one inverse-frequency set.

    Stored ready to apply: ``cos`` duplicated over both halves and ``sin`` with the first half
    negated, so :func:`apply_rope` is three kernels. The table is computed for ``initial``
    positions and grown (doubling, capped at ``max_positions``) only when a longer sequence
    shows up, so a 32k-context model does not pay for 32k rows up front. Values are
    bit-identical to transformers' (same float32 products, negation is exact).
    """

    def __init__(self, inv_freq: torch.Tensor, max_positions: int, initial: int = 4096) -> None:
        self.inv_freq = inv_freq.float()
        self.max_positions = max(1, int(max_positions))
        self.cos = torch.empty(0, 2 * inv_freq.numel())
        self.sin = torch.empty(0, 2 * inv_freq.numel())
        self._grow(min(initial, self.max_positions))

    def _grow(self, rows: int) -> None:
        pos = torch.arange(rows, dtype=torch.int64).float()
        freqs = pos[:, None] * self.inv_freq[None, :]  # [rows, D/2]
        cos, sin = freqs.cos(), freqs.sin()
        self.cos = torch.cat((cos, cos), dim=-1)  # [rows, D]
        self.sin = torch.cat((-sin, sin), dim=-1)  # [rows, D], sign of rotate_half folded in

    def lookup(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cos, sin)`` rows for ``positions [T]``, each ``[T, 1, head_dim]``."""
        needed = int(positions.max()) + 1 if positions.numel() else 0
        if needed > self.cos.shape[0]:
            if needed > self.max_positions:
                raise ValueError(
                    f"position {needed - 1} exceeds the model's context length {self.max_positions}"
                )
            self._grow(min(self.max_positions, max(needed, 2 * self.cos.shape[0])))
        return self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half rotary embedding of ``x [T, heads, head_dim]`` with rows from
    :meth:`RotaryTable.lookup`: transformers' ``x*cos + rotate_half(x)*sin``, where
    ``rotate_half(x) = cat(-x2, x1)`` and the minus sign already lives in ``sin``."""
    half = x.shape[-1] // 2
    swapped = torch.cat((x[..., half:], x[..., :half]), dim=-1)
    return x * cos + swapped * sin
