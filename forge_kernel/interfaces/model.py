"""Runnable models: a :class:`CausalLM` runs a step's :class:`ForwardBatch` against a KV cache.

The loader, tokenizer and batch types are re-exported for plugins written against the
pre-split module; new code imports them from their role modules.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from forge_kernel.interfaces.batch import ForwardBatch, SequenceChunk
from forge_kernel.interfaces.loader import ModelConfig, ModelSource, WeightLoader, WeightTensor
from forge_kernel.interfaces.tokenizer import IncrementalDetokenizer, Tokenizer

if TYPE_CHECKING:
    import torch

    from forge_kernel.interfaces.kv_cache import KVCache, KVCacheSpec


class CausalLM(ABC):
    """A built model ready to run forward passes on a backend."""

    config: ModelConfig

    @abstractmethod
    def kv_cache_spec(self) -> KVCacheSpec:
        """Shape of the KV cache this model needs (layers, kv heads, head dim, dtype)."""

    @abstractmethod
    def forward(self, batch: ForwardBatch, kv_cache: KVCache) -> torch.Tensor:
        """Run ``batch``, writing its keys/values into ``kv_cache``.

        Returns float32 logits ``[num_chunks_needing_logits, vocab_size]``, one row per chunk
        with ``needs_logits`` (in batch order), for that chunk's last token.
        """

    def embed(self, batch: ForwardBatch, kv_cache: KVCache) -> torch.Tensor:
        """Mean-pooled final hidden states ``[num_chunks, hidden_size]`` (for embeddings).
        Optional: architectures that cannot embed raise :class:`NotImplementedError`."""
        raise NotImplementedError(f"{type(self).__name__} does not produce embeddings")


__all__ = ["CausalLM", "ForwardBatch", "IncrementalDetokenizer", "ModelConfig", "ModelSource",
           "SequenceChunk", "Tokenizer", "WeightLoader", "WeightTensor"]


def __getattr__(name: str):
    # Transitional: ModelArchitecture moved to interfaces.architecture (which imports this
    # module); resolved lazily so the import graph stays acyclic. Remove once no caller
    # imports it from here (tests/test_hooks.py).
    if name == "ModelArchitecture":
        from forge_kernel.interfaces.architecture import ModelArchitecture

        return ModelArchitecture
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
