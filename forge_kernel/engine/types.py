"""Types shared by the engine and every endpoint plugin (OpenAI API, WebSocket, CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from forge_kernel.errors import InvalidRequest  # noqa: F401 - endpoints import it from here

if TYPE_CHECKING:
    from forge_kernel.interfaces.constraint import ConstraintSpec


@dataclass(slots=True)
class SamplingParams:
    """Per-request generation settings (OpenAI names where OpenAI has one)."""

    max_tokens: int | None = None
    """``None`` generates until a stop condition or the context is full."""
    temperature: float = 1.0
    """0 means greedy."""
    top_p: float = 1.0
    top_k: int = 0
    """0 disables top-k."""
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    min_tokens: int = 0
    ignore_eos: bool = False
    logprobs: int | None = None
    """``None``: no logprobs; ``0``: the sampled token's; ``k``: also the top ``k``."""
    n: int = 1
    constraint: ConstraintSpec | None = None
    """Structured output every choice's tokens are masked to (compiled at validation)."""
    adapter: str | None = None
    """A LoRA adapter loaded with ``--lora`` (OpenAI ``model``: ``base:adapter``)."""


@dataclass(slots=True)
class TokenLogprob:
    """A sampled token's log-probability under the raw logits, and the top ``k`` alternatives."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass(slots=True)
class Usage:
    """Token counts of a finished request (``cached_tokens``: from the prefix cache)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class CompletionDelta:
    """One streamed event for one choice of a request."""

    index: int
    """Choice index (0 .. n-1)."""
    text: str
    """Newly produced text; text that might begin a stop string is held back until resolved."""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None
    """``"stop"``, ``"length"`` or ``"abort"`` on the choice's last event, else ``None``."""
    usage: Usage | None = None
    """Set on the last event of the whole request (after every choice finished)."""


@dataclass(slots=True)
class RequestMetrics:
    """Timings (``time.monotonic()`` s) of one finished request, for engine observers."""

    request_id: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    arrival_time: float
    first_token_time: float | None
    finish_time: float
    token_times: list[float] = field(default_factory=list)
    """When each output token was produced (first choice); inter-token latency comes from it."""
    finish_reason: str | None = None
    num_preemptions: int = 0

    @property
    def time_to_first_token(self) -> float | None:
        return None if self.first_token_time is None else self.first_token_time - self.arrival_time

    @property
    def inter_token_latencies(self) -> list[float]:
        times = self.token_times
        return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]

    @property
    def e2e_latency(self) -> float:
        return self.finish_time - self.arrival_time


@dataclass(slots=True)
class EngineStats:
    """A snapshot of the engine's load (``engine.stats()``), safe to read from any thread."""

    num_running: int = 0
    num_waiting: int = 0
    kv_usage: float = 0.0
    num_preemptions: int = 0
    prompt_tokens_total: int = 0
    generation_tokens_total: int = 0
    num_requests: int = 0
    """Requests in flight."""
    num_requests_finished: int = 0
    kv_capacity_tokens: int = 0
    kv_free_tokens: int = 0
    num_steps: int = 0
    spec_draft_tokens: int = 0
    """Speculative decoding: drafts verified, accepted, and the row-steps that carried one."""
    spec_accepted_tokens: int = 0
    spec_rows: int = 0
