"""Runnable models: a :class:`CausalLM` runs a step's :class:`ForwardBatch` against a KV cache."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from forge_kernel.interfaces.batch import ForwardBatch
    from forge_kernel.interfaces.kv_cache import KVCache, KVCacheSpec
    from forge_kernel.interfaces.loader import ModelConfig


class CausalLM(ABC):
    """A built model ready to run forward passes on a backend."""

    config: ModelConfig

    @abstractmethod
    def kv_cache_spec(self) -> KVCacheSpec:
        """Shape of the KV cache this model needs (layers, kv heads, head dim, dtype)."""

    @abstractmethod
    def forward(self, batch: ForwardBatch, kv_cache: KVCache) -> torch.Tensor:
        """Run ``batch`` (KV written into ``kv_cache``); float32 logits ``[sum of num_logits
        of chunks with needs_logits, vocab_size]`` in batch order."""

    def embed(self, batch: ForwardBatch, kv_cache: KVCache) -> torch.Tensor:
        """Mean-pooled final hidden states ``[num_chunks, hidden_size]``; optional."""
        raise NotImplementedError(f"{type(self).__name__} does not produce embeddings")
