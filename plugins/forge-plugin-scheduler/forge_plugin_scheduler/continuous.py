"""Continuous batching: sequences join and leave the running batch at every step.

Each step, in this order:

1. **decodes** — every running sequence with one token left to compute gets it (decodes never
   use the prompt budget, so a long prompt never stalls streams that are generating);
2. **prefill continuations** — running sequences part-way through their prompt get their next
   chunk, FCFS, within the step's ``max_prefill_tokens`` budget (chunked prefill);
3. **admission** — waiting sequences join FCFS while the batch has room (``max_batch_size``),
   the budget has tokens and the cache has space; the head of the queue is never overtaken, so
   a long prompt cannot starve. On first admission a prefix-caching cache supplies the already
   computed prefix (always leaving >= 1 token to compute, for logits). No admission happens in
   a step that had to preempt (the cache is full; admitting would only thrash).

When the cache cannot grow a running sequence, the most recently arrived running sequence is
preempted by recompute (KV freed, ``num_computed_tokens = 0``, back at the head of the queue):
never a crash, never a silent truncation. A sequence that can never fit (more tokens than the
whole cache, or than ``max_model_len``) is **rejected** in :attr:`SchedulerOutput.rejected` so
the engine can fail its request with a clear error instead of waiting forever.

Forked sequences (``n > 1``: the engine forks choices 1..n-1 from choice 0 in the cache once the
prompt is computed, sharing its blocks copy-on-write) arrive through :meth:`add` already
holding KV (``num_computed_tokens > 0``): they join the running batch directly when it has room,
otherwise their KV is freed and they queue for recompute, so waiting sequences never hold KV.
"""

from __future__ import annotations

from collections import deque
from itertools import count

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
    accepts_forked = True

    def __init__(self, config: SchedulerConfig, kv_cache: KVCache) -> None:
        if config.max_batch_size < 1 or config.max_prefill_tokens < 1:
            raise ValueError(f"max_batch_size ({config.max_batch_size}) and max_prefill_tokens "
                             f"({config.max_prefill_tokens}) must be >= 1")
        self.config = config
        self._kv = kv_cache
        self._waiting: deque[Sequence] = deque()
        self._running: list[Sequence] = []
        self._order: dict[int, int] = {}  # seq_id -> arrival rank (FCFS, preemption victim)
        self._ranks = count()

    @property
    def kv_cache(self) -> KVCache:
        return self._kv

    def add(self, seq: Sequence) -> None:
        self._order[seq.seq_id] = next(self._ranks)
        if seq.num_computed_tokens > 0:  # forked: its KV is already cached (shared)
            if len(self._running) < self.config.max_batch_size:
                seq.status = SequenceStatus.RUNNING
                self._running.append(seq)
                return
            self._kv.free(seq.seq_id)  # no room: recompute later (the prefix cache may help)
            seq.num_computed_tokens = 0
        seq.status = SequenceStatus.WAITING
        self._waiting.append(seq)

    def num_waiting(self) -> int:
        return len(self._waiting)

    def num_running(self) -> int:
        return len(self._running)

    def finish(self, seq_id: int) -> None:
        self._remove(seq_id)

    def abort(self, seq_id: int) -> None:
        self._remove(seq_id)

    def _remove(self, seq_id: int) -> None:
        for pool in (self._running, self._waiting):
            for seq in [s for s in pool if s.seq_id == seq_id]:
                pool.remove(seq)
                seq.status = SequenceStatus.FINISHED
        self._order.pop(seq_id, None)
        self._kv.free(seq_id)

    def _limit(self) -> int:
        """Most tokens one sequence can ever hold."""
        return min(self._kv.capacity_tokens(), self.config.max_model_len)

    # -- the step -----------------------------------------------------------------------------
    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        scheduled: dict[int, ScheduledChunk] = {}
        budget = self.config.max_prefill_tokens
        decoding = [s for s in self._running if s.num_uncomputed_tokens <= 1]
        prefilling = [s for s in self._running if s.num_uncomputed_tokens > 1]
        for seq in decoding:
            if seq.status is SequenceStatus.RUNNING and seq.num_uncomputed_tokens == 1:
                if self._grow(seq, seq.num_tokens, out, scheduled):
                    scheduled[seq.seq_id] = ScheduledChunk(seq, 1)
        for seq in prefilling:
            if budget <= 0:
                break
            if seq.status is not SequenceStatus.RUNNING:
                continue  # preempted earlier in this step
            chunk = min(seq.num_uncomputed_tokens, budget)
            if self._grow(seq, seq.num_computed_tokens + chunk, out, scheduled):
                scheduled[seq.seq_id] = ScheduledChunk(seq, chunk)
                budget -= chunk
        # After a preemption the cache is full: admitting now would only thrash (and could
        # re-admit the very sequence just evicted), so admission waits for the next step.
        while (self._waiting and not out.preempted and budget > 0
               and len(self._running) < self.config.max_batch_size):
            seq = self._waiting[0]
            if seq.num_tokens > self._limit():
                self._waiting.popleft()
                self._reject(seq, out)
                continue
            if seq.num_computed_tokens == 0:
                cached = self._kv.match_prefix(seq.seq_id, seq.prefix_keys)
                seq.num_computed_tokens = min(cached, seq.num_tokens - 1)
            chunk = min(seq.num_uncomputed_tokens, budget)
            total = seq.num_computed_tokens + chunk
            if not self._kv.can_allocate(seq.seq_id, total):
                # Waiting sequences hold no KV: give back the prefix blocks just attached.
                self._kv.free(seq.seq_id)
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
        """Make room for ``seq`` to hold ``total`` tokens, preempting the latest arrivals.
        Returns False when ``seq`` itself was preempted or rejected."""
        if total > self._limit():
            self._running.remove(seq)
            self._kv.free(seq.seq_id)
            self._reject(seq, out)
            return False
        while not self._kv.can_allocate(seq.seq_id, total):
            victim = max(self._running, key=lambda s: self._order.get(s.seq_id, -1))
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

    def _reject(self, seq: Sequence, out: SchedulerOutput) -> None:
        seq.status = SequenceStatus.FINISHED
        self._order.pop(seq.seq_id, None)
        out.rejected.append(seq)
