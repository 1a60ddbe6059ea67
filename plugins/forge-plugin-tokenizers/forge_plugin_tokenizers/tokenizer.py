"""The :class:`Tokenizer` implementation over a Hugging Face ``tokenizers.Tokenizer``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenizers import Tokenizer as RustTokenizer

from forge_kernel.interfaces.tokenizer import IncrementalDetokenizer, Tokenizer

END_OF_TURN_TOKENS = ("<end_of_turn>", "<|eot_id|>", "<|im_end|>", "<|end|>", "<|eom_id|>")
"""Control tokens that end an assistant turn: chat models stop on them as on EOS (as
llama.cpp does), even when the file names only ``<eos>``."""

_PROMPT_CONTEXT = 6
"""Prompt tokens a detokenizer starts with, so the first generated token's leading space is
decoded as it would be mid-text."""


class HFTokenizer(Tokenizer):
    """Encode/decode with the Rust tokenizer; BOS is added here (not by a post-processor) so
    ``add_bos`` is explicit and visible."""

    def __init__(self, tok: RustTokenizer, *, bos_id: int | None, eos_ids: set[int],
                 add_bos: bool, chat_template: str | None, architecture: str = "",
                 special_ids: set[int] | None = None) -> None:
        self._tok = tok
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        self.bos_id = bos_id
        self.add_bos = add_bos and bos_id is not None
        # Lookups one token at a time: ``get_vocab()`` would build a dict of the whole
        # vocabulary (~30 MB of Python objects for a 262k-token vocabulary) just for these.
        lookup = tok.token_to_id
        turn_ends = {i for i in map(lookup, END_OF_TURN_TOKENS) if i is not None}
        self._special = frozenset(special_ids or ()) | frozenset(
            lookup(t.content) for t in tok.get_added_tokens_decoder().values() if t.special)
        self.eos_ids = frozenset(eos_ids) | (turn_ends & self._special)
        self.chat_template = chat_template
        self.architecture = architecture

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if add_special_tokens and self.add_bos:
            ids.insert(0, self.bos_id)
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def id_to_piece(self, token_id: int) -> str:
        return self._tok.id_to_token(token_id) or ""

    def is_special(self, token_id: int) -> bool:
        return token_id in self._special

    def token_to_id(self, token: str) -> int | None:
        """The id of a vocabulary entry, or ``None``."""
        return self._tok.token_to_id(token)

    def detokenizer(self, prompt_ids: Sequence[int] = ()) -> IncrementalDetokenizer:
        return StreamDetokenizer(self, list(prompt_ids[-_PROMPT_CONTEXT:]))

    def apply_chat_template(self, messages: list[dict[str, Any]],
                            add_generation_prompt: bool = True, **kwargs: Any) -> str:
        from forge_plugin_tokenizers.chat import render_chat

        return render_chat(self, messages, add_generation_prompt, **kwargs)


class StreamDetokenizer(IncrementalDetokenizer):
    """Emits text only once it decodes to whole characters.

    Decodes a short sliding window twice (up to the last emitted token, and up to the new one)
    and emits the difference; a trailing U+FFFD means a multi-byte character is incomplete, so
    nothing is emitted until the next token completes it. Concatenated output equals
    ``decode(all generated ids)``.
    """

    def __init__(self, tokenizer: HFTokenizer, context: list[int]) -> None:
        self._tok = tokenizer
        self._ids = list(context)
        self._prefix = 0  # window start
        self._read = len(context)  # end of what was already emitted

    def add(self, token_id: int) -> str:
        self._ids.append(token_id)
        before = self._tok.decode(self._ids[self._prefix:self._read])
        after = self._tok.decode(self._ids[self._prefix:])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return after[len(before):]
        return ""

    def flush(self) -> str:
        before = self._tok.decode(self._ids[self._prefix:self._read])
        after = self._tok.decode(self._ids[self._prefix:])
        self._prefix = self._read = len(self._ids)
        return after[len(before):]
