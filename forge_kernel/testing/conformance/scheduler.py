"""``SchedulerConformance``: the contract every
:class:`~forge_kernel.interfaces.scheduler.Scheduler` must meet, as a pytest class to subclass.

Usage in a plugin's tests::

    from forge_kernel.testing.conformance.scheduler import SchedulerConformance

    class TestMyScheduler(SchedulerConformance):
        kv_cache_name = "paged"              # a registered cache (prefix tests need caching)

        def make_scheduler(self, config, kv_cache):
            return MyScheduler(config, kv_cache)

A :class:`Simulation` plays the engine (computes chunks, commits KV, emits tokens, finishes
sequences) over a real KV cache. Checked: sequences join and leave at every step, the prompt
budget and batch size, decodes are not stalled by long prompts, FCFS admission, preemption
under a tiny cache without truncation, abort at any moment frees everything, prefix hits when
the cache declares ``supports_prefix_caching``, forked sequences when the scheduler declares
``accepts_forked``, and rejection of a sequence larger than the whole cache.
"""

from __future__ import annotations

import random

import pytest

from forge_kernel.interfaces.kv_cache import KVCacheConfig, KVCacheSpec
from forge_kernel.interfaces.scheduler import SchedulerConfig, Sequence, SequenceStatus

torch = pytest.importorskip("torch")


class Simulation:
    """Drives a scheduler like the engine does, checking every step's output."""

    def __init__(self, sched, config: SchedulerConfig) -> None:
        self.sched, self.config = sched, config
        self.finished: list[Sequence] = []
        self.rejected: list[Sequence] = []
        self.preemptions = 0
        self.history: list[dict[int, int]] = []  # per step: seq_id -> tokens computed

    def step(self) -> dict[int, int]:
        out = self.sched.schedule()
        chunks = {c.seq.seq_id: c.num_tokens for c in out.chunks}
        assert len(chunks) == len(out.chunks), "a sequence was scheduled twice in one step"
        assert len(out.chunks) <= self.config.max_batch_size
        prefill = sum(c.num_tokens for c in out.chunks
                      if c.seq.num_uncomputed_tokens > 1)
        assert prefill <= self.config.max_prefill_tokens
        preempted = {s.seq_id for s in out.preempted}
        assert not preempted & set(chunks), "a preempted sequence was also scheduled"
        for seq in out.preempted:
            assert seq.num_computed_tokens == 0 and seq.status is SequenceStatus.WAITING
        self.preemptions += len(out.preempted)
        self.rejected += out.rejected
        for c in out.chunks:
            seq = c.seq
            assert seq.status is SequenceStatus.RUNNING
            assert 1 <= c.num_tokens <= seq.num_uncomputed_tokens
            seq.num_computed_tokens += c.num_tokens
            self.sched.kv_cache.commit(seq.seq_id, seq.prefix_keys, seq.num_computed_tokens)
            if seq.num_computed_tokens == seq.num_tokens:  # logits: sample a token
                seq.token_ids.append(3 + (seq.seq_id * 31 + seq.num_tokens) % 97)
                if seq.num_tokens - seq.num_prompt_tokens >= seq.max_tokens:
                    self.sched.finish(seq.seq_id)
                    assert seq.status is SequenceStatus.FINISHED
                    self.finished.append(seq)
        self.history.append(chunks)
        return chunks

    def run(self, max_steps: int = 2000) -> None:
        for _ in range(max_steps):
            if not self.sched.has_work():
                return
            self.step()
        raise AssertionError(f"scheduler still busy after {max_steps} steps")


def make_seq(seq_id: int, prompt_len: int, max_tokens: int = 4, first: int = 1) -> Sequence:
    """A sequence whose prompt is ``first, first+1, ...`` (distinct ids per ``first``)."""
    ids = [(first + i) % 1000 for i in range(prompt_len)]
    return Sequence(seq_id, ids, prompt_len, max_tokens=max_tokens)


class SchedulerConformance:
    """Subclass and implement :meth:`make_scheduler`; choose ``kv_cache_name``."""

    kv_cache_name = "paged"
    block_size = 4

    def make_scheduler(self, config: SchedulerConfig, kv_cache):
        """Return a fresh scheduler of the implementation under test."""
        raise NotImplementedError("subclasses implement make_scheduler(config, kv_cache)")

    def make_kv_cache(self, spec: KVCacheSpec, config: KVCacheConfig):
        from forge_kernel.plugins import get_host

        registry = get_host().registry
        if self.kv_cache_name not in registry.names("kv_cache"):
            pytest.skip(f"needs a {self.kv_cache_name!r} KV cache plugin")
        return registry.create("kv_cache", self.kv_cache_name, spec, config)

    def setup(self, *, num_blocks: int = 64, batch: int = 8, budget: int = 16,
              max_model_len: int = 256) -> Simulation:
        spec = KVCacheSpec(num_layers=1, num_kv_heads=1, head_dim=4, dtype=torch.float32,
                           max_model_len=max_model_len)
        kv = self.make_kv_cache(spec, KVCacheConfig(block_size=self.block_size,
                                                    num_blocks=num_blocks))
        config = SchedulerConfig(max_batch_size=batch, max_prefill_tokens=budget,
                                 max_model_len=max_model_len)
        return Simulation(self.make_scheduler(config, kv), config)

    # -- tests ------------------------------------------------------------------------------
    def test_join_and_leave_every_step(self):
        sim = self.setup()
        sim.sched.add(make_seq(1, 5, max_tokens=3))
        assert sim.step() == {1: 5}
        sim.sched.add(make_seq(2, 3, max_tokens=5))
        assert sim.step() == {1: 1, 2: 3}  # joins the running batch at once
        assert sim.step() == {1: 1, 2: 1}
        assert sim.step() == {2: 1}  # 1 generated 3 tokens and left
        assert [s.seq_id for s in sim.finished] == [1]
        sim.run()
        assert sim.sched.num_running() == sim.sched.num_waiting() == 0

    def test_chunked_prefill_within_budget_and_decodes_not_stalled(self):
        sim = self.setup(budget=8)
        sim.sched.add(make_seq(1, 2, max_tokens=20))
        sim.step()
        sim.sched.add(make_seq(2, 50, max_tokens=2))
        for _ in range(6):
            chunks = sim.step()
            assert chunks.get(1) == 1  # a decode every step while 2's prompt is chunked
            assert 1 <= chunks.get(2, 0) <= 8
        sim.run()
        assert len(sim.finished) == 2

    def test_max_batch_size(self):
        sim = self.setup(batch=3, budget=64)
        for i in range(8):
            sim.sched.add(make_seq(i, 4, max_tokens=3, first=10 * i))
        sim.step()
        assert sim.sched.num_running() == 3 and sim.sched.num_waiting() == 5
        sim.run()
        assert max(len(h) for h in sim.history) == 3
        assert len(sim.finished) == 8

    def test_fcfs_admission(self):
        sim = self.setup(batch=2, budget=64)
        for i in range(6):
            sim.sched.add(make_seq(i, 3 + i, max_tokens=2, first=10 * i))
        sim.run()
        first_step = {}
        for step, chunks in enumerate(sim.history):
            for sid in chunks:
                first_step.setdefault(sid, step)
        order = sorted(first_step, key=lambda s: (first_step[s], s))
        assert order == list(range(6))
        assert [s.seq_id for s in sim.finished][:2] == [0, 1]

    def test_preemption_under_tiny_cache_never_truncates(self):
        sim = self.setup(num_blocks=8, batch=8, budget=32)  # 32 tokens for everyone
        seqs = [make_seq(i, 6, max_tokens=12, first=50 * i) for i in range(5)]
        for s in seqs:
            sim.sched.add(s)
        sim.run()
        assert sim.preemptions > 0
        assert sorted(s.seq_id for s in sim.finished) == list(range(5))
        for s in seqs:
            assert s.num_tokens == 6 + 12  # nothing truncated
        assert sum(s.num_preemptions for s in seqs) == sim.preemptions
        kv = sim.sched.kv_cache
        assert kv.free_tokens() == kv.capacity_tokens()

    def test_abort_at_any_moment_frees_everything(self):
        rng = random.Random(0)
        sim = self.setup(num_blocks=16, batch=4, budget=8)
        for i in range(10):
            sim.sched.add(make_seq(i, rng.randrange(2, 20), max_tokens=30, first=40 * i))
        alive = list(range(10))
        while alive:
            sim.step()
            victim = alive.pop(rng.randrange(len(alive)))
            sim.sched.abort(victim)
            sim.sched.abort(victim)  # idempotent
        sim.sched.abort(424242)  # unknown ids are fine
        kv = sim.sched.kv_cache
        assert not sim.sched.has_work()
        assert kv.free_tokens() == kv.capacity_tokens() and kv.usage() == 0.0
        assert sim.sched.schedule().is_empty

    def test_prefix_hit_reduces_computed_tokens(self):
        sim = self.setup(budget=64)
        sim.sched.add(make_seq(1, 13, max_tokens=2, first=5))
        sim.run()
        b = make_seq(2, 13, max_tokens=2, first=5)
        sim.sched.add(b)
        chunks = sim.step()
        if not sim.sched.kv_cache.supports_prefix_caching:
            assert chunks[2] == 13  # nothing cached: the whole prompt is computed
            return
        assert 1 <= chunks[2] < 13  # only the uncached tail, never zero tokens
        whole = make_seq(3, 12, max_tokens=2, first=5)  # prompt = a cached prefix exactly
        sim.sched.add(whole)
        assert 1 <= sim.step()[3] <= 12
        sim.run()
        assert len(sim.finished) == 3

    def test_forked_sequences_as_declared(self):
        """``accepts_forked``: a sequence added with its KV already cached (forked from a running
        one) runs from its cached tokens, or gives its KV back and waits for recompute."""
        sim = self.setup(batch=2, budget=64)
        assert isinstance(sim.sched.accepts_forked, bool)
        kv = sim.sched.kv_cache
        if not (sim.sched.accepts_forked and kv.supports_fork):
            pytest.skip("accepts_forked is False (or the cache cannot fork)")
        parent = make_seq(1, 5, max_tokens=6)
        sim.sched.add(parent)
        sim.step()  # prompt computed, a token sampled
        children = []
        for child_id in (2, 3):  # the second finds the batch (2) full
            child = Sequence(child_id, list(parent.token_ids), 5, max_tokens=5)
            kv.fork(1, child_id)
            child.num_computed_tokens = 5
            sim.sched.add(child)
            children.append(child)
            if child.status is SequenceStatus.WAITING:
                assert child.num_computed_tokens == 0  # waiting sequences hold no KV
            else:
                assert child.status is SequenceStatus.RUNNING
        chunks = sim.step()
        for child in children:
            if child.seq_id in chunks and child.num_computed_tokens == 6:
                assert chunks[child.seq_id] == 1  # ran from its cached prompt
        sim.run()
        assert sorted(s.seq_id for s in sim.finished) == [1, 2, 3]
        assert kv.free_tokens() == kv.capacity_tokens()

    def test_sequence_larger_than_cache_is_rejected(self):
        sim = self.setup(num_blocks=4, budget=64)  # 16 tokens
        big = make_seq(1, 17)
        ok = make_seq(2, 5, max_tokens=2)
        sim.sched.add(big)
        sim.sched.add(ok)
        sim.run()
        assert sim.rejected == [big] and big.status is SequenceStatus.FINISHED
        assert [s.seq_id for s in sim.finished] == [2]

    def test_growing_past_the_cache_is_rejected_not_looping(self):
        sim = self.setup(num_blocks=4, budget=64)  # 16 tokens; needs 10 + 12
        seq = make_seq(1, 10, max_tokens=12)
        sim.sched.add(seq)
        sim.run(max_steps=100)
        assert sim.rejected == [seq]
        kv = sim.sched.kv_cache
        assert kv.free_tokens() == kv.capacity_tokens()

    def test_random_workload_completes(self):
        rng = random.Random(1)
        sim = self.setup(num_blocks=24, batch=5, budget=12)
        for i in range(25):
            sim.sched.add(make_seq(i, rng.randrange(1, 30), max_tokens=rng.randrange(1, 10),
                                   first=rng.choice([0, 0, 100 * i])))
            if i % 3 == 0:
                sim.step()
        sim.run()
        assert len(sim.finished) == 25
        kv = sim.sched.kv_cache
        assert kv.free_tokens() == kv.capacity_tokens()
