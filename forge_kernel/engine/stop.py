"""Per-sequence output: incremental detokenization and stop conditions; stop strings never leak
(docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from forge_kernel.interfaces.tokenizer import IncrementalDetokenizer


@dataclass(slots=True)
class StepOutput:
    """What one new token produced: text to emit now and, if the sequence ended, why."""

    text: str
    finish_reason: str | None = None


def held_suffix_length(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of some stop string."""
    best = 0
    for stop in stops:
        # a proper prefix only: a whole stop string would already have been matched
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best


class StopChecker:
    """Feeds one sequence's tokens through its detokenizer and decides when it ends
    (``max_tokens``: the output budget, already capped by the context length)."""

    def __init__(self, detokenizer: IncrementalDetokenizer, *, stop: Sequence[str] = (),
                 stop_token_ids: Sequence[int] = (), eos_ids: frozenset[int] = frozenset(),
                 ignore_eos: bool = False, max_tokens: int) -> None:
        self.detok = detokenizer
        self.stops = [s for s in stop if s]
        self.stop_ids = frozenset(stop_token_ids)
        self.eos_ids = frozenset() if ignore_eos else eos_ids
        self.max_tokens = max_tokens
        self.num_tokens = 0
        self.pending = ""
        """Decoded text not yet emitted (a possible stop-string prefix)."""
        self.finished: str | None = None

    def add(self, token_id: int) -> StepOutput:
        """Account one generated token; return the text now safe to emit."""
        if self.finished is not None:
            raise RuntimeError("token added to a finished sequence")
        self.num_tokens += 1
        if token_id in self.stop_ids or token_id in self.eos_ids:
            # The stop token's own text is not part of the answer; what was held back is.
            return self._finish("stop", self.pending + self.detok.flush())
        text = self.pending + self.detok.add(token_id)
        last = self.num_tokens >= self.max_tokens
        if last:
            text += self.detok.flush()
        if self.stops:
            cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
            if cut >= 0:
                return self._finish("stop", text[:cut])
        if last:
            return self._finish("length", text)
        hold = held_suffix_length(text, self.stops) if self.stops else 0
        self.pending = text[len(text) - hold:] if hold else ""
        return StepOutput(text[:len(text) - hold] if hold else text)

    def _finish(self, reason: str, text: str) -> StepOutput:
        self.finished = reason
        self.pending = ""
        return StepOutput(text, reason)

    def abort(self) -> StepOutput:
        """End the sequence early (client went away); held-back text is dropped."""
        return self._finish("abort", "")
