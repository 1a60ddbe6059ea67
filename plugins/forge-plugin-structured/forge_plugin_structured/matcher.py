"""Per-sequence matchers (the kernel's :class:`Constraint`) over llguidance.

:class:`GrammarConstraint` enforces a grammar from the first token. :class:`LazyConstraint`
leaves the output free until a trigger text appears (``<tool_call>`` under
``tool_choice="auto"``), then enforces a grammar that starts with that trigger: the model
chooses whether to call a tool, and once it does the call is well-formed JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

import llguidance

from forge_kernel.interfaces.constraint import CompiledConstraint, Constraint
from forge_plugin_structured.limits import TokenClasses, narrow

_LOG_QUIET = 0


def _eos_only(mask_out, eos_ids: list[int]) -> None:
    mask_out.zero_()
    for t in eos_ids:
        if t // 32 < mask_out.shape[0]:
            word = int(mask_out[t // 32]) | (1 << (t % 32))
            mask_out[t // 32] = word - (1 << 32) if word >= 1 << 31 else word


@dataclass(slots=True, frozen=True)
class Limits:
    """The token-side limits of :mod:`forge_plugin_structured.limits` for one grammar."""

    classes: TokenClasses
    max_digits: int = 0
    """Digit run at which digit-led tokens leave the mask (``0``: no limit)."""
    close_reserve: int = 0
    """Tokens before ``max_tokens`` from which closing tokens are preferred (``0``: off)."""


class GrammarConstraint(Constraint):
    """An llguidance matcher fed one token per step, with optional :class:`Limits`."""

    __slots__ = ("_m", "_eos", "_done", "_limits", "_run", "_left")

    def __init__(self, tokenizer: llguidance.LLTokenizer, grammar: str,
                 limits: Limits | None = None, max_tokens: int | None = None) -> None:
        self._m = llguidance.LLMatcher(tokenizer, grammar, log_level=_LOG_QUIET)
        self._eos = list(tokenizer.eos_tokens)
        self._done = False
        self._limits = limits
        self._run = 0  # digits at the end of the output so far
        self._left = max_tokens  # tokens left before max_tokens (None: unknown)

    def allowed_tokens(self, mask_out) -> bool:
        if self._done or self._m.is_stopped() or self._m.is_error():
            _eos_only(mask_out, self._eos)  # complete (or broken): end the sequence
            return True
        self._m.unsafe_compute_mask_ptr(mask_out.data_ptr(), mask_out.numel() * 4)
        lim = self._limits
        if lim is not None:  # cheap unless a limit is reached (one int compare each)
            closing = lim.close_reserve and self._left is not None \
                and self._left <= lim.close_reserve
            if closing and narrow(mask_out, lim.classes.closing):
                return True
            # Closing: even one digit more is too many when the budget is nearly spent.
            cap = 1 if closing else lim.max_digits
            if cap and self._run >= cap:
                narrow(mask_out, lim.classes.digit_start)
        return True

    def accept(self, token_id: int) -> bool:
        if self._done:
            return token_id in self._eos
        if token_id in self._eos and self._m.is_accepting():
            self._done = True
            return True
        if not self._m.consume_token(token_id):
            return False
        if self._left is not None:
            self._left -= 1
        if self._limits is not None:
            self._run = self._limits.classes.run_after(self._run, token_id)
        return True

    def consume_bytes(self, data: bytes, tokenizer: llguidance.LLTokenizer) -> bool:
        """Advance by text produced before this matcher existed (see :class:`LazyConstraint`)."""
        return self._m.consume_tokens(tokenizer.tokenize_bytes(data))

    def is_finished(self) -> bool:
        return self._done or self._m.is_stopped()

    @property
    def error(self) -> str:
        return self._m.get_error() if self._m.is_error() else ""


class LazyConstraint(Constraint):
    """Free output until ``trigger`` appears, then ``grammar`` (which begins with ``trigger``)
    from the trigger's first byte on. If the bytes already produced since the trigger do not
    fit the grammar (a token ran past it), the output stays free and the endpoint's parser
    reports what came out as plain text."""

    __slots__ = ("_tok", "_grammar", "_trigger", "_tail", "_inner", "_free", "_limits", "_left")

    def __init__(self, tokenizer: llguidance.LLTokenizer, grammar: str, trigger: str,
                 limits: Limits | None = None, max_tokens: int | None = None) -> None:
        self._tok, self._grammar = tokenizer, grammar
        self._limits, self._left = limits, max_tokens
        self._trigger = trigger.encode()
        self._tail = b""
        self._inner: GrammarConstraint | None = None
        self._free = False

    def allowed_tokens(self, mask_out) -> bool:
        if self._inner is None:
            return False  # every token allowed: the sampler skips the mask
        return self._inner.allowed_tokens(mask_out)

    def accept(self, token_id: int) -> bool:
        if self._inner is not None:
            return self._inner.accept(token_id)
        if self._left is not None:
            self._left -= 1
        if self._free:
            return True
        # Keep just enough text to find a trigger that spans tokens.
        self._tail = (self._tail + self._tok.decode_bytes([token_id]))[-(len(self._trigger)
                                                                          + 256):]
        at = self._tail.find(self._trigger)
        if at >= 0:
            inner = GrammarConstraint(self._tok, self._grammar, self._limits, self._left)
            if inner.consume_bytes(self._tail[at:], self._tok):
                self._inner = inner
            else:
                self._free = True
        return True

    def is_finished(self) -> bool:
        return self._inner is not None and self._inner.is_finished()


class CompiledGrammar(CompiledConstraint):
    """A validated grammar for one tokenizer; each choice gets its own matcher (~1 ms)."""

    __slots__ = ("tokenizer", "grammar", "trigger", "limits")

    def __init__(self, tokenizer: llguidance.LLTokenizer, grammar: str,
                 trigger: str | None = None, limits: Limits | None = None) -> None:
        self.tokenizer, self.grammar, self.trigger = tokenizer, grammar, trigger
        self.limits = limits

    def new_constraint(self, max_tokens: int | None = None) -> Constraint:
        """A fresh matcher; ``max_tokens`` (the sequence's output budget, when the engine
        passes it) enables the closing preference of ``Limits.close_reserve``."""
        if self.trigger:
            return LazyConstraint(self.tokenizer, self.grammar, self.trigger, self.limits,
                                  max_tokens)
        return GrammarConstraint(self.tokenizer, self.grammar, self.limits, max_tokens)
