"""The step's input: tokens of several sequences flattened into one :class:`ForwardBatch`,
which the engine builds and both the model and the KV cache read."""

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
    """Whether the last token of the chunk needs next-token logits (false for inner prefill
    chunks)."""
    adapter: str | None = None
    """The LoRA adapter the model applies to this chunk's rows (``SamplingParams.adapter``);
    ``None``: the base model. Chunks of different adapters share one batch."""
    num_logits: int = 1
    """With ``needs_logits``: how many of the chunk's last tokens get a logits row (``1 + k``
    when a decode row carries ``k`` speculative draft tokens to verify)."""


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
