"""Request state (``n`` choices, each with its own generator and stop checker), the ``n > 1``
policy, and the validation every request passes before it is queued."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from forge_kernel.engine.stop import StopChecker
from forge_kernel.engine.types import SamplingParams
from forge_kernel.errors import InvalidRequest, KVCacheFull
from forge_kernel.interfaces.constraint import Constraint
from forge_kernel.interfaces.kv_cache import KVCache
from forge_kernel.interfaces.scheduler import Sequence
from forge_kernel.interfaces.tokenizer import Tokenizer

MAX_LOGPROBS = 20
MAX_N = 128


@dataclass(slots=True, eq=False)
class SeqState:
    """One choice of a request: the scheduler's :class:`Sequence` plus output bookkeeping."""

    index: int
    seq: Sequence
    stop: StopChecker
    generator: torch.Generator | None
    output_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    cached_tokens: int | None = None
    """Prompt tokens found in the prefix cache (known at the first scheduled chunk)."""
    forked: bool = False
    """Forked from choice 0 this step: joins the scheduler once its first token is sampled."""
    constraint: Constraint | None = None
    """This choice's structured-output matcher (``params.constraint`` compiled), else None."""

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass(slots=True, eq=False)
class Request:
    """A submitted request and its choices."""

    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    seqs: list[SeqState]
    arrival_time: float = field(default_factory=time.monotonic)
    first_token_time: float | None = None
    token_times: list[float] = field(default_factory=list)
    """Times choice 0 produced tokens (for inter-token latency metrics)."""
    held_back: list[SeqState] = field(default_factory=list)
    """Choices not yet given to the scheduler (they wait for choice 0's prompt to be cached)."""

    @property
    def finished(self) -> bool:
        return all(s.finished for s in self.seqs)

    @property
    def completion_tokens(self) -> int:
        return sum(len(s.output_ids) for s in self.seqs)

    @property
    def cached_tokens(self) -> int:
        return min((s.cached_tokens or 0 for s in self.seqs), default=0)

    def hold_back(self, share_prompt: bool) -> list[SeqState]:
        """The choices to schedule now: with ``share_prompt`` choices 1..n-1 wait until choice
        0's prompt is computed (then forked from it, or found in the prefix cache)."""
        self.held_back = self.seqs[1:] if share_prompt else []
        return self.seqs[:1] if share_prompt else list(self.seqs)

    def fork_held_back(self, kv_cache: KVCache) -> list[SeqState]:
        """Fork the held-back choices from choice 0 (its prompt just computed) and return them;
        one the cache has no room for stays held back, to be recomputed."""
        parent = self.seqs[0].seq
        forked, remaining = [], []
        for child in self.held_back:
            try:
                kv_cache.fork(parent.seq_id, child.seq.seq_id)
            except KVCacheFull:
                remaining.append(child)
                continue
            child.seq.num_computed_tokens = parent.num_computed_tokens
            child.cached_tokens = parent.num_prompt_tokens
            child.forked = True
            forked.append(child)
        self.held_back = remaining
        return forked

    def joining(self, state: SeqState) -> list[SeqState]:
        """Choices to give the scheduler once ``state`` has its new token: ``state`` if forked
        this step and, after choice 0's first token, the held-back choices not forked."""
        out = [state] if state.forked else []
        state.forked = False
        if state.index == 0 and self.held_back:
            out += self.held_back
            self.held_back = []
        return out


def make_generator(seed: int | None, index: int) -> torch.Generator | None:
    """The generator of choice ``index``; seeded requests are reproducible per choice."""
    if seed is None:
        return None  # torch's global RNG
    gen = torch.Generator()
    gen.manual_seed((int(seed) + index) & 0xFFFF_FFFF_FFFF_FFFF)
    return gen


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def _check_finite(name: str, value: float, lo: float, hi: float, lo_open: bool = False) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise _bad(name, f"{name} must be a number, got {value!r}")
    if value < lo or value > hi or (lo_open and value == lo):
        lo_s = f"({lo}" if lo_open else f"[{lo}"
        raise _bad(name, f"{name} must be in {lo_s}, {hi}], got {value}")


def _check_ids(param: str, ids, vocab_size: int, label: str) -> None:
    for t in ids:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab_size:
            raise _bad(param, label.format(repr(t)) + f" is out of range [0, {vocab_size})")


_RANGES = {"temperature": (0.0, 100.0, False), "top_p": (0.0, 1.0, True),
           "min_p": (0.0, 1.0, False), "repetition_penalty": (0.0, 100.0, True),
           "presence_penalty": (-2.0, 2.0, False), "frequency_penalty": (-2.0, 2.0, False)}
"""Float parameters: ``(low, high, low excluded)``."""


def validate(prompt_ids: list[int], params: SamplingParams, *, vocab_size: int,
             max_model_len: int, prompt_param: str = "prompt") -> None:
    """Raise :class:`InvalidRequest` (with ``param`` set) for anything the engine cannot run."""
    if not prompt_ids:
        raise _bad(prompt_param, f"{prompt_param} must contain at least one token")
    _check_ids(prompt_param, prompt_ids, vocab_size, "token id {} in " + prompt_param)
    p = params
    if p.max_tokens is not None and (not isinstance(p.max_tokens, int) or p.max_tokens < 1):
        raise _bad("max_tokens", f"max_tokens must be at least 1, got {p.max_tokens!r}")
    for name, (lo, hi, lo_open) in _RANGES.items():
        _check_finite(name, getattr(p, name), lo, hi, lo_open)
    if not isinstance(p.top_k, int) or p.top_k < -1:
        raise _bad("top_k", f"top_k must be -1, 0 (disabled) or positive, got {p.top_k!r}")
    _check_ids("logit_bias", p.logit_bias, vocab_size, "logit_bias token id {}")
    for bias in p.logit_bias.values():
        _check_finite("logit_bias", bias, -100.0, 100.0)
    if p.seed is not None and (isinstance(p.seed, bool) or not isinstance(p.seed, int)
                               or not -(2**63) <= p.seed < 2**63):
        raise _bad("seed", f"seed must be a 64-bit signed integer, got {p.seed!r}")
    if any(not isinstance(s, str) or not s for s in p.stop):
        raise _bad("stop", "stop must be a list of non-empty strings")
    _check_ids("stop_token_ids", p.stop_token_ids, vocab_size, "stop token id {}")
    if not isinstance(p.min_tokens, int) or p.min_tokens < 0:
        raise _bad("min_tokens", f"min_tokens must be >= 0, got {p.min_tokens!r}")
    if p.max_tokens is not None and p.min_tokens > p.max_tokens:
        raise _bad("min_tokens", f"min_tokens ({p.min_tokens}) must not exceed max_tokens "
                                 f"({p.max_tokens})")
    if p.logprobs is not None and (not isinstance(p.logprobs, int)
                                   or not 0 <= p.logprobs <= MAX_LOGPROBS):
        raise _bad("logprobs", f"logprobs must be between 0 and {MAX_LOGPROBS}, "
                               f"got {p.logprobs!r}")
    if not isinstance(p.n, int) or not 1 <= p.n <= MAX_N:
        raise _bad("n", f"n must be between 1 and {MAX_N}, got {p.n!r}")
    if p.constraint is not None and p.ignore_eos:
        # A finished constraint allows only end-of-sequence tokens: nothing valid could follow.
        raise _bad("ignore_eos", f"ignore_eos cannot be combined with {p.constraint.param}")
    requested = len(prompt_ids) + (p.max_tokens or 0)
    if len(prompt_ids) >= max_model_len or requested > max_model_len:
        raise InvalidRequest(
            f"This model's maximum context length is {max_model_len} tokens. However, you "
            f"requested {requested} tokens ({len(prompt_ids)} in the messages, "
            f"{p.max_tokens or 0} in the completion). Please reduce the length of the messages "
            f"or completion.", param=prompt_param, code="context_length_exceeded")


def make_request(request_id: str, prompt_ids: list[int], params: SamplingParams,
                 tokenizer: Tokenizer, max_model_len: int, next_seq_id,
                 cache_namespace: int = 0) -> Request:
    """Build the request's ``n`` sequences (assumes :func:`validate` passed)."""
    budget = max_model_len - len(prompt_ids)
    max_tokens = budget if params.max_tokens is None else min(params.max_tokens, budget)
    seqs = []
    for index in range(params.n):
        seq = Sequence(seq_id=next_seq_id(), token_ids=list(prompt_ids),
                       num_prompt_tokens=len(prompt_ids), max_tokens=max_tokens,
                       arrival_time=time.monotonic(), cache_namespace=cache_namespace)
        checker = StopChecker(tokenizer.detokenizer(prompt_ids), stop=params.stop,
                              stop_token_ids=params.stop_token_ids, eos_ids=tokenizer.eos_ids,
                              ignore_eos=params.ignore_eos, max_tokens=max_tokens)
        state = SeqState(index, seq, checker, make_generator(params.seed, index))
        if params.constraint is not None:  # compiled by the engine's validate()
            state.constraint = params.constraint.compiled.new_constraint(max_tokens=max_tokens)
        seqs.append(state)
    return Request(request_id, list(prompt_ids), params, seqs)

