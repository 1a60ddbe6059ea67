"""Speculative decoding: a :class:`Speculator` drafts tokens before a step's forward pass and
verifies them after it (docs/speculative.md)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from forge_kernel.interfaces.scheduler import ScheduledChunk


class Speculator(ABC):
    """Held by the engine and called inside every step. Factory: ``factory(config, *, model,
    tokenizer, backend, kv_cache)``, named by ``config.speculative`` before any ``:``."""

    @abstractmethod
    def propose(self, engine: Any, chunks: list[ScheduledChunk]) -> dict[int, list[int]]:
        """Draft tokens per ``seq_id`` of this step's decode rows (their KV grown to fit)."""

    @abstractmethod
    def verify(self, engine: Any, rows: list, logits: torch.Tensor,
               drafts: dict[int, list[int]]) -> tuple[list, torch.Tensor, tuple[list, list]]:
        """Returns the undrafted rows with their logits ``[rows, V]``, and ``(rows, tokens)``
        of the drafted ones (accepted drafts + 1 each; rejected drafts' KV truncated)."""

    @abstractmethod
    def counts(self) -> tuple[int, int, int]:
        """``(draft tokens verified, accepted, row-steps that carried a draft)``."""
