"""Speculative decoding: a :class:`Speculator` drafts tokens before a step's forward pass and
verifies them after it (docs/speculative.md)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from forge_kernel.interfaces.scheduler import ScheduledChunk


class Speculator(ABC):
    """Held by the engine like the KV cache and called inside every step, without hooks.
    Factory: ``factory(config, *, model, tokenizer, backend, kv_cache)`` (``config``: the
    :class:`~forge_kernel.engine.config.EngineConfig`), registered under the method that
    ``config.speculative`` names before any ``:`` (``ngram``; ``draft`` for ``draft:MODEL``).
    Rolling back rejected drafts needs a cache with ``supports_truncate``."""

    @abstractmethod
    def propose(self, engine: Any, chunks: list[ScheduledChunk]) -> dict[int, list[int]]:
        """Draft tokens per ``seq_id`` for this step's decode rows, their KV allocation grown
        by the draft; the engine runs each draft after its row, one logits row per token
        (``SequenceChunk.num_logits``)."""

    @abstractmethod
    def verify(self, engine: Any, rows: list, logits: torch.Tensor,
               drafts: dict[int, list[int]]) -> tuple[list, torch.Tensor, tuple[list, list]]:
        """Take the drafted rows out of the step: returns the other rows with their logits
        ``[rows, V]`` for the sampler, and ``(rows, tokens)`` of the drafted ones (accepted
        drafts plus one token each, ``(token, logprob or None)``) for postprocessing, their
        rejected drafts' KV truncated."""

    @abstractmethod
    def counts(self) -> tuple[int, int, int]:
        """``(draft tokens verified, accepted, row-steps that carried a draft)``."""
