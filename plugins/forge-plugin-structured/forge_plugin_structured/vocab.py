"""llguidance's view of a forge tokenizer, built once per model.

llguidance needs every token's bytes and a way to tokenize text. A tokenizer backed by the Rust
``tokenizers`` library (forge-plugin-tokenizers: GGUF and Hugging Face models) hands over its
serialized form, which llguidance reads exactly (byte fallback, ``▁`` spaces, byte-level BPE).
Any other :class:`~forge_kernel.interfaces.tokenizer.Tokenizer` is described token by token through
its public methods (``id_to_piece``/``decode``/``encode``).
"""

from __future__ import annotations

import re
import threading
from typing import Any

import llguidance

_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_cache: dict[int, tuple[Any, llguidance.LLTokenizer]] = {}
_lock = threading.Lock()


def _rust_tokenizer(tokenizer: Any) -> Any | None:
    try:
        from tokenizers import Tokenizer as RustTokenizer
    except ImportError:  # pragma: no cover - forge-plugin-tokenizers depends on it
        return None
    backend = getattr(tokenizer, "_tok", None)
    return backend if isinstance(backend, RustTokenizer) else None


class _Wrapper:
    """The :class:`llguidance.TokenizerWrapper` protocol over forge's public tokenizer API."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        self._tok = tokenizer
        self.eos_token_id = min(tokenizer.eos_ids) if tokenizer.eos_ids else None
        self.bos_token_id = tokenizer.bos_id
        self.special_token_ids = [i for i in range(vocab_size) if tokenizer.is_special(i)]
        self._anchor_ids = tokenizer.encode("a", add_special_tokens=False)
        self._anchor = tokenizer.decode(self._anchor_ids)
        self.tokens = [self._bytes(i) if i < tokenizer.vocab_size else b""
                       for i in range(vocab_size)]

    def _bytes(self, token_id: int) -> bytes:
        piece = self._tok.id_to_piece(token_id)
        match = _BYTE_PIECE.match(piece)
        if match:
            return bytes([int(match.group(1), 16)])
        if self._tok.is_special(token_id):
            return piece.encode()
        # Decode after an anchor so a leading space survives decoders that strip it.
        both = self._tok.decode(self._anchor_ids + [token_id])
        if both.startswith(self._anchor):
            return both[len(self._anchor):].encode()
        return piece.encode()

    def __call__(self, text: str | bytes) -> list[int]:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        return self._tok.encode(text, add_special_tokens=False)


def ll_tokenizer(tokenizer: Any, vocab_size: int) -> llguidance.LLTokenizer:
    """The :class:`llguidance.LLTokenizer` of ``tokenizer`` (``vocab_size`` = the model's logits
    width, which may exceed the tokenizer's); built once and cached (~4 s for 262k tokens)."""
    key = id(tokenizer)
    with _lock:
        entry = _cache.get(key)
        if entry is None:
            eos = sorted(tokenizer.eos_ids) or None
            backend = _rust_tokenizer(tokenizer)
            if backend is not None:
                source: Any = backend.to_str()
            else:
                source = llguidance.TokenizerWrapper(_Wrapper(tokenizer, vocab_size))
            entry = (tokenizer, llguidance.LLTokenizer(source, n_vocab=vocab_size,
                                                       eos_token=eos))
            _cache[key] = entry  # the tokenizer is kept, so its id is not reused
    return entry[1]
