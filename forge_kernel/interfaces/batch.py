"""The step's input: several sequences' tokens flattened into one :class:`ForwardBatch`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(slots=True)
class SequenceChunk:
    """One sequence's slice of a :class:`ForwardBatch`."""

    seq_id: int
    start_pos: int
    """Tokens of this sequence already in the KV cache (the chunk's first position)."""
    num_tokens: int
    """New tokens in this step (a whole prompt, a prefill chunk, or 1 when decoding)."""
    needs_logits: bool = True
    """Whether the chunk's last token needs logits (false for inner prefill chunks)."""
    adapter: str | None = None
    """The LoRA adapter for this chunk's rows (``None``: base); adapters share one batch."""
    num_logits: int = 1
    """How many of the chunk's last tokens get logits (``1 + k`` with ``k`` drafts)."""


@dataclass(slots=True)
class ForwardBatch:
    """Tokens of several sequences flattened into one step (continuous batching)."""

    token_ids: torch.Tensor  # [T] int64, chunks concatenated in order
    positions: torch.Tensor  # [T] int64, absolute position of each token in its sequence
    chunks: list[SequenceChunk]

    def iter_spans(self) -> Iterator[tuple[SequenceChunk, int, int]]:
        """Yield ``(chunk, begin, end)`` row ranges of each chunk within the flat batch."""
        begin = 0
        for chunk in self.chunks:
            yield chunk, begin, begin + chunk.num_tokens
            begin += chunk.num_tokens
