"""Compute backends: where weights live and how matrix products run."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from forge_kernel.interfaces.loader import WeightTensor


class LinearOp(Protocol):
    """``y = x @ W.T``; ``x`` is ``[T, in_features]``, the result ``[T, out_features]``."""

    in_features: int
    out_features: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


class EmbeddingOp(Protocol):
    """Row lookup: ``ids [T] -> [T, dim]`` in the backend's compute dtype."""

    num_embeddings: int
    dim: int

    def __call__(self, ids: torch.Tensor) -> torch.Tensor: ...


class LayerOps(Protocol):
    """Optional fused kernels for a decoder layer's work outside the matrix products (RMSNorms,
    residual adds, q/k norms with RoPE, gated activations), which on a small model otherwise
    costs hundreds of tiny framework ops per token. A backend offers one as
    :attr:`Backend.layer_ops`; models fall back to their own torch code when it is ``None``.

    Tensors are in the backend's compute dtype with contiguous last axes; norm weights are
    ``[D]`` (Gemma's ``+1`` already folded in). Each row's result must not depend on the other
    rows (batch invariance).
    """

    def rms_norm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        """``x [T, D] -> x / rms(x) * weight [T, D]``, a new tensor."""
        ...

    def residual_norm(self, x: torch.Tensor, y: torch.Tensor, y_weight: torch.Tensor | None,
                      weight: torch.Tensor | None,
                      eps: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Residual step: ``x = x + (rms_norm(y, y_weight) if y_weight else y)``, then
        ``(x, rms_norm(x, weight))`` (``None`` second when ``weight`` is). ``x [T, D]`` must be
        the caller's own buffer: it may be updated in place; ``y [T, D]`` is only read."""
        ...

    def qk_rope(self, q: torch.Tensor, k: torch.Tensor, q_weight: torch.Tensor | None,
                k_weight: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor,
                eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-head RMSNorm of ``q [T, H, hd]`` and ``k [T, KV, hd]`` (weights ``[hd]``;
        ``None``: no norm), then rotate-half RoPE with ``cos``/``sin [T, 1, hd]`` (``cos`` over
        both halves, ``sin`` with its first half negated). Returns the rotated pair as new
        tensors (``q`` and ``k`` may be row-strided views of a fused q/k/v output)."""
        ...

    def gated(self, gate: torch.Tensor, up: torch.Tensor, activation: str) -> torch.Tensor:
        """``act(gate) * up``, both ``[T, N]`` (``activation``: ``"silu"`` or
        ``"gelu_tanh"``), a new ``[T, N]`` tensor."""
        ...


class Backend(ABC):
    """A device plus the kernels that run models on it.

    Factories are called as ``factory(threads=None)``, plus ``device=N`` when the user picked a
    device (``--device N``; a factory without a ``device`` parameter is refused for it). A
    backend decides the in-memory form of each weight (it may keep GGUF blocks quantized when
    that is faster) and the activation dtype.

    A factory may carry ``factory.availability() -> (ok, reason)`` so listings (``forge
    plugins``) can tell without creating the backend whether it can run here.
    """

    name: str
    device: str
    """torch device string: ``"cpu"``, ``"cuda:0"``."""
    preferred_kv_cache: str | None = None
    """Optional: the KV-cache plugin this backend works best with (``cuda``: ``device-paged``,
    blocks on the GPU). The engine builder uses it when the user names no cache (``--kv-cache``);
    ``None``: the builder's default, ``paged``."""
    layer_ops: LayerOps | None = None
    """Optional fused non-matrix kernels (:class:`LayerOps`) the model may use in its forward
    pass; ``None``: the model's own torch code."""

    @classmethod
    @abstractmethod
    def availability(cls) -> tuple[bool, str]:
        """``(True, "")`` when usable here, else ``(False, reason)`` (e.g. "no CUDA device")."""

    @property
    @abstractmethod
    def compute_dtype(self) -> torch.dtype:
        """Dtype of activations between layers."""

    @abstractmethod
    def linear(self, weight: WeightTensor, bias: WeightTensor | None = None) -> LinearOp:
        """Prepare a projection whose weight is ``[out_features, in_features]``."""

    @abstractmethod
    def embedding(self, weight: WeightTensor) -> EmbeddingOp:
        """Prepare a token-embedding table ``[num_embeddings, dim]``."""

    @abstractmethod
    def dense(self, weight: WeightTensor) -> torch.Tensor:
        """Materialize a small tensor (norm weights, biases) on the device in float32."""

    def describe(self) -> str:
        """One line for the start-up banner (threads, kernels chosen)."""
        return f"{self.name} on {self.device}"
