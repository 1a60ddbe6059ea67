"""Tokenizers: text <-> token ids, and streaming detokenization."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any


class Tokenizer(ABC):
    """Text <-> token ids for one model."""

    vocab_size: int
    bos_id: int | None
    eos_ids: frozenset[int]
    add_bos: bool
    chat_template: str | None

    @abstractmethod
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text`` (BOS prepended if ``add_special_tokens`` and the model wants
        one); special-token strings such as ``<start_of_turn>`` map to their ids."""

    @abstractmethod
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids``."""

    @abstractmethod
    def id_to_piece(self, token_id: int) -> str:
        """The vocabulary entry of one id, as stored (for logprobs and debugging)."""

    @abstractmethod
    def is_special(self, token_id: int) -> bool:
        """True for control tokens (BOS, EOS, turn markers) that are hidden from output."""

    @abstractmethod
    def detokenizer(self, prompt_ids: Sequence[int] = ()) -> IncrementalDetokenizer:
        """A fresh streaming decoder; ``prompt_ids`` give it left context (for leading spaces)."""

    @abstractmethod
    def apply_chat_template(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **kwargs: Any
    ) -> str:
        """Render ``messages`` with the model's chat template (or a documented fallback)."""


class IncrementalDetokenizer(ABC):
    """Streams text as tokens arrive without ever emitting a broken UTF-8 sequence."""

    @abstractmethod
    def add(self, token_id: int) -> str:
        """Feed one token; return the newly completed text (empty mid-character)."""

    @abstractmethod
    def flush(self) -> str:
        """Return whatever is pending at end of stream (invalid bytes become U+FFFD)."""
