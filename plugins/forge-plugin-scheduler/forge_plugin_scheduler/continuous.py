"""Continuous batching: sequences join and leave the running batch at every step.

Each step:

1. every running sequence gets its next chunk: one token when decoding, or the next piece of
   its prompt (chunked prefill) within the step's prompt-token budget;
2. if the KV cache cannot grow a running sequence, the most recently arrived running sequence
   is preempted by recompute (KV freed, progress reset, put back at the head of the queue) —
   never a crash, never a silent truncation;
3. waiting sequences are admitted first-come first-served while the batch has room, the budget
   has tokens left and the cache has space; the head of the queue is never overtaken, so a long
   prompt cannot starve. On first admission a prefix-caching cache may supply the prompt's
   already computed prefix.

A sequence needing more KV than the whole cache can ever hold is rejected (the engine fails its
request with a clear error) instead of waiting forever.
"""

from __future__ import annotations

from collections import deque

from forge_kernel.interfaces.kv_cache import KVCache
from forge_kernel.interfaces.scheduler import (
    ScheduledChunk,
    Scheduler,
    SchedulerConfig,
    SchedulerOutput,
    Sequence,
    SequenceStatus,
)


class ContinuousScheduler(Scheduler):
    """FCFS continuous batching with chunked prefill and preemption by recompute."""

    name = "continuous"

    def __init__(self, config: SchedulerConfig, kv_cache: KVCache) -> None:
        self.config = config
        self._kv = kv_cache
        self._waiting: deque[Sequence] = deque()
        self._running: list[Sequence] = []

    @property
    def kv_cache(self) -> KVCache:
        return self._kv

    def add(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        self._waiting.append(seq)

    def num_waiting(self) -> int:
        return len(self._waiting)

    def num_running(self) -> int:
        return len(self._running)

    def finish(self, seq_id: int) -> None:
        self._remove(seq_id, SequenceStatus.FINISHED)

    def abort(self, seq_id: int) -> None:
        self._remove(seq_id, SequenceStatus.FINISHED)

    def _remove(self, seq_id: int, status: SequenceStatus) -> None:
        for pool in (self._running, self._waiting):
            for seq in list(pool):
                if seq.seq_id == seq_id:
                    pool.remove(seq)
                    seq.status = status
        self._kv.free(seq_id)

    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.config.max_prefill_tokens
        scheduled: dict[int, ScheduledChunk] = {}
        for seq in list(self._running):
            if seq.status is not SequenceStatus.RUNNING:
                continue  # preempted earlier in this loop
            remaining = seq.num_uncomputed_tokens
            prefill = remaining > 1
            chunk = min(remaining, budget) if prefill else 1
            if chunk <= 0:
                continue  # budget spent: this sequence's next prompt piece waits a step
            if not self._grow(seq, seq.num_computed_tokens + chunk, out, scheduled):
                continue  # it was preempted itself
            scheduled[seq.seq_id] = ScheduledChunk(seq, chunk)
            if prefill:
                budget -= chunk
        while self._waiting and len(self._running) < self.config.max_batch_size and budget > 0:
            seq = self._waiting[0]
            if seq.num_tokens > self._kv.capacity_tokens():
                self._waiting.popleft()
                seq.status = SequenceStatus.FINISHED
                out.rejected.append(seq)
                continue
            if seq.num_computed_tokens == 0:
                cached = self._kv.match_prefix(seq.seq_id, seq.token_ids)
                seq.num_computed_tokens = min(cached, seq.num_tokens - 1)
            chunk = min(seq.num_uncomputed_tokens, budget)
            total = seq.num_computed_tokens + chunk
            if not self._kv.can_allocate(seq.seq_id, total):
                if seq.num_computed_tokens and not self._running:
                    self._kv.free(seq.seq_id)  # keep the cache clean for the next try
                    seq.num_computed_tokens = 0
                break  # FCFS: nobody overtakes the head of the queue
            self._kv.allocate(seq.seq_id, total)
            self._waiting.popleft()
            seq.status = SequenceStatus.RUNNING
            self._running.append(seq)
            scheduled[seq.seq_id] = ScheduledChunk(seq, chunk)
            budget -= chunk
        out.chunks = [c for c in scheduled.values() if c.seq.status is SequenceStatus.RUNNING]
        return out

    def _grow(self, seq: Sequence, total: int, out: SchedulerOutput,
              scheduled: dict[int, ScheduledChunk]) -> bool:
        """Make room for ``seq`` to hold ``total`` tokens, preempting the latest arrivals."""
        while not self._kv.can_allocate(seq.seq_id, total):
            victim = self._running[-1]
            self._preempt(victim, out)
            scheduled.pop(victim.seq_id, None)
            if victim is seq:
                return False
        self._kv.allocate(seq.seq_id, total)
        return True

    def _preempt(self, seq: Sequence, out: SchedulerOutput) -> None:
        self._running.remove(seq)
        self._kv.free(seq.seq_id)
        seq.num_computed_tokens = 0
        seq.num_preemptions += 1
        seq.status = SequenceStatus.WAITING
        self._waiting.appendleft(seq)
        out.preempted.append(seq)
