"""Schedulers: which sequences run in each engine step, and how many tokens each."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Sequence as Ids
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forge_kernel.interfaces.kv_cache import KVCache


class SequenceStatus(enum.Enum):
    """Where a :class:`Sequence` is: queued, in the running batch, or done."""

    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(slots=True, eq=False)
class Sequence:
    """Scheduling state of one generation stream (a request with ``n=2`` has two)."""

    seq_id: int
    token_ids: list[int]
    """Prompt followed by generated tokens."""
    num_prompt_tokens: int
    max_tokens: int
    """Generation budget: the scheduler never needs more than ``num_prompt_tokens + max_tokens``."""
    arrival_time: float = 0.0
    num_computed_tokens: int = 0
    """Tokens whose keys/values are in the KV cache."""
    status: SequenceStatus = SequenceStatus.WAITING
    num_preemptions: int = 0
    cache_namespace: int = 0
    """0: the base model, ``k``: the ``k``-th LoRA adapter loaded (its KV differs)."""

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def prefix_keys(self) -> Ids[int]:
        """The token ids offset by ``cache_namespace << 32`` (a view): the prefix cache's keys."""
        if not self.cache_namespace:
            return self.token_ids
        return _OffsetIds(self.token_ids, self.cache_namespace << 32)

    @property
    def num_uncomputed_tokens(self) -> int:
        return len(self.token_ids) - self.num_computed_tokens


class _OffsetIds(Ids[int]):
    """``ids`` with ``offset`` added to every element, computed on access (no copy)."""

    __slots__ = ("_ids", "_offset")

    def __init__(self, ids: list[int], offset: int) -> None:
        self._ids, self._offset = ids, offset

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, i):  # noqa: ANN001, ANN204 - an index or a slice
        if isinstance(i, slice):
            return [t + self._offset for t in self._ids[i]]
        return self._ids[i] + self._offset


@dataclass(slots=True)
class SchedulerConfig:
    """User-facing settings (``--max-batch-size``, ``--max-prefill-tokens``)."""

    max_batch_size: int = 64
    max_prefill_tokens: int = 512
    """Per-step budget of prompt tokens; longer prompts are prefilled in chunks."""
    max_model_len: int = 8192


@dataclass(slots=True)
class ScheduledChunk:
    """One sequence's share of a step."""

    seq: Sequence
    num_tokens: int
    """Tokens of ``seq`` to compute this step, starting at ``seq.num_computed_tokens``."""


@dataclass(slots=True)
class SchedulerOutput:
    """What :meth:`Scheduler.schedule` decided for one step."""

    chunks: list[ScheduledChunk] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)
    """Sequences evicted this step (their KV freed; they will be recomputed)."""
    rejected: list[Sequence] = field(default_factory=list)
    """Sequences that need more KV than the whole cache (already removed; the engine fails them)."""

    @property
    def is_empty(self) -> bool:
        return not self.chunks


class Scheduler(ABC):
    """Decides each step's batch. Factory: ``factory(config, kv_cache)``. A scheduled chunk's
    KV is already allocated; running out of cache preempts, never truncates (the full contract:
    docs/plugins/interfaces.md)."""

    name: str
    accepts_forked: bool = False
    """Whether :meth:`add` takes sequences whose KV is already cached (forked choices)."""

    @abstractmethod
    def add(self, seq: Sequence) -> None:
        """Queue a new sequence."""

    @abstractmethod
    def schedule(self) -> SchedulerOutput:
        """Pick this step's chunks (allocating their KV space)."""

    @abstractmethod
    def finish(self, seq_id: int) -> None:
        """A sequence is done: remove it and free its KV."""

    @abstractmethod
    def abort(self, seq_id: int) -> None:
        """Drop a sequence wherever it is (waiting or running) and free its KV. Idempotent."""

    @abstractmethod
    def num_waiting(self) -> int:
        """Sequences queued, not yet running (preempted ones included)."""

    @abstractmethod
    def num_running(self) -> int:
        """Sequences in the running batch."""

    def has_work(self) -> bool:
        """Whether any sequence is waiting or running."""
        return self.num_waiting() + self.num_running() > 0

    @property
    @abstractmethod
    def kv_cache(self) -> KVCache:
        """The cache this scheduler allocates from."""
