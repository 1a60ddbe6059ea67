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
