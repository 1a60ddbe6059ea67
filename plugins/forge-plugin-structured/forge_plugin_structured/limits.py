"""Length limits that keep a small model's JSON finite: the schema side and the token side.

JSON schema allows numbers and strings of any length, and a 270M model, once inside one, may
repeat a digit or a phrase until ``max_tokens`` cuts the document (invalid JSON). Two limits,
both narrowing what the schema accepts (every output still validates against it):

* **strings** (schema rewrite, :func:`cap_strings`): a string schema with no ``maxLength``,
  ``pattern``, ``format``, ``enum`` or ``const`` gets ``maxLength = max_string_length``, so
  llguidance's grammar itself bounds it;
* **digits** (token side, :class:`TokenClasses`): JSON-schema ``minimum``/``maximum`` bound an
  integer but not a number's fraction or exponent, so the matcher counts the current run of
  digits and, at ``max_number_digits``, drops the tokens that start with a digit from the mask
  whenever the grammar allows something else (a closing quote, ``.``, ``,``, ``}``...). Where
  only digits are allowed (a ``pattern`` asking for 20 digits) the mask is left as it is.

When the budget is nearly spent (``close_reserve`` tokens left), the matcher prefers tokens
made only of closing characters (``"``, ``]``, ``}``) so the document can still end within
``max_tokens``; a generation that is cut anyway ends with ``finish_reason: "length"``.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

_DIGITS = frozenset(b"0123456789")
_CLOSERS = frozenset(b'"]}')
_UNBOUNDED_STRING_KEYS = ("maxLength", "pattern", "format", "enum", "const")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")


def cap_strings(schema: Any, max_length: int) -> Any:
    """``schema`` with ``maxLength: max_length`` on every string schema that has no length,
    pattern, format, enum or const of its own (``max_length <= 0``: unchanged)."""
    if max_length <= 0 or not isinstance(schema, dict):
        return schema
    out = dict(schema)
    kind = out.get("type")
    if (kind == "string" or (isinstance(kind, list) and "string" in kind)) \
            and not any(k in out for k in _UNBOUNDED_STRING_KEYS):
        out["maxLength"] = max_length
    for key in _SUBSCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {k: cap_strings(v, max_length) for k, v in out[key].items()}
    for key in _SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [cap_strings(v, max_length) for v in out[key]]
    for key in ("items", "additionalProperties", "not", "if", "then", "else"):
        if isinstance(out.get(key), dict):
            out[key] = cap_strings(out[key], max_length)
    return out


def _pack(flags: np.ndarray) -> np.ndarray:
    """A bool per token -> the sampler's mask layout (``int32`` words, bit ``t % 32``)."""
    words = (flags.size + 31) // 32
    padded = np.zeros(words * 32, dtype=np.uint8)
    padded[:flags.size] = flags
    return np.packbits(padded.reshape(words, 32), axis=1, bitorder="little") \
        .view(np.uint32).reshape(words).view(np.int32)


class TokenClasses:
    """Per-token facts the limits need, built once per llguidance tokenizer (~1 s for a
    262k vocabulary): which tokens start with a digit or consist of closers, and how a token
    changes the current digit run (its trailing digits; whether it is digits only). The
    end-of-sequence tokens count as closing."""

    __slots__ = ("digit_start", "closing", "trailing", "all_digits")

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        starts = np.zeros(vocab_size, dtype=bool)
        closing = np.zeros(vocab_size, dtype=bool)
        self.trailing = [0] * vocab_size
        self.all_digits = [False] * vocab_size
        for t in range(vocab_size):
            data = tokenizer.decode_bytes([t])
            if not data or tokenizer.is_special_token(t):
                continue
            starts[t] = data[0] in _DIGITS
            closing[t] = all(b in _CLOSERS for b in data)
            n = len(data) - len(data.rstrip(b"0123456789"))
            self.trailing[t], self.all_digits[t] = n, n == len(data)
        for t in tokenizer.eos_tokens:  # ending the document is the best way to close it
            if t < vocab_size:
                closing[t] = True
        self.digit_start = ~_pack(starts)  # AND with this: digit-led tokens removed
        self.closing = _pack(closing)

    def run_after(self, run: int, token_id: int) -> int:
        """The digit run after ``token_id`` (bytes at the end of the output that are digits)."""
        if token_id >= len(self.trailing):
            return 0
        return run + self.trailing[token_id] if self.all_digits[token_id] \
            else self.trailing[token_id]


def narrow(mask_out, keep: np.ndarray) -> bool:
    """``mask_out &= keep`` unless that leaves nothing allowed; ``True`` if narrowed."""
    words = mask_out.numpy()
    narrowed = words & keep
    if not narrowed.any():
        return False
    words[:] = narrowed
    return True


_classes: dict[int, tuple[Any, TokenClasses]] = {}
_lock = threading.Lock()


def token_classes(tokenizer: Any, vocab_size: int) -> TokenClasses:
    """The cached :class:`TokenClasses` of an llguidance tokenizer."""
    with _lock:
        entry = _classes.get(id(tokenizer))
        if entry is None:
            entry = (tokenizer, TokenClasses(tokenizer, vocab_size))
            _classes[id(tokenizer)] = entry  # the tokenizer is kept: its id is not reused
    return entry[1]
