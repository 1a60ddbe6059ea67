"""The continuous scheduler over a real KV cache (the naive one: token-granular accounting)."""

from __future__ import annotations

import pytest
import torch

from forge_kernel.interfaces.kv_cache import KVCacheConfig, KVCacheSpec
from forge_kernel.interfaces.scheduler import SchedulerConfig, Sequence, SequenceStatus
from forge_kernel.plugins import get_host

registry = get_host().registry
if "naive" not in registry.names("kv_cache"):
    pytest.skip("needs forge-plugin-kv-naive", allow_module_level=True)

SPEC = KVCacheSpec(num_layers=1, num_kv_heads=1, head_dim=4, dtype=torch.float32,
                   max_model_len=64)


def make(capacity_blocks: int = 8, batch: int = 8, budget: int = 16):
    kv = registry.create("kv_cache", "naive", SPEC,
                         KVCacheConfig(block_size=8, num_blocks=capacity_blocks))
    return registry.create("scheduler", "continuous",
                           SchedulerConfig(max_batch_size=batch, max_prefill_tokens=budget,
                                           max_model_len=64), kv), kv


def seq(i: int, prompt: int, arrival: float = 0.0) -> Sequence:
    return Sequence(i, list(range(1, prompt + 1)), prompt, max_tokens=8, arrival_time=arrival)


def run_step(sched) -> dict[int, int]:
    """Schedule, then pretend the model ran: chunks are computed, decodes emit a token."""
    out = sched.schedule()
    for chunk in out.chunks:
        chunk.seq.num_computed_tokens += chunk.num_tokens
        if chunk.seq.num_computed_tokens == chunk.seq.num_tokens:
            chunk.seq.token_ids.append(7)
    return {c.seq.seq_id: c.num_tokens for c in out.chunks}


def decode_until_preempted(sched, steps: int):
    """Decode steps (every chunk computed, one token appended) until one preempts; returns
    that step's output, or the last one."""
    for _ in range(steps):
        out = sched.schedule()
        for c in out.chunks:
            c.seq.num_computed_tokens += c.num_tokens
            c.seq.token_ids.append(7)
        if out.preempted:
            break
    return out


def test_chunked_prefill_respects_budget_and_decodes_interleave():
    sched, _ = make(budget=10)
    sched.add(seq(1, 4))
    assert run_step(sched) == {1: 4}
    sched.add(seq(2, 25))
    assert run_step(sched) == {1: 1, 2: 10}  # decode first, then a prompt chunk
    assert run_step(sched) == {1: 1, 2: 10}
    assert run_step(sched) == {1: 1, 2: 5}
    assert run_step(sched) == {1: 1, 2: 1}


def test_sequences_join_and_leave_every_step_and_batch_is_capped():
    sched, kv = make(batch=2)
    for i in range(3):
        sched.add(seq(i, 3))
    assert set(run_step(sched)) == {0, 1}
    assert sched.num_waiting() == 1
    sched.finish(0)
    assert set(run_step(sched)) == {1, 2}
    sched.abort(1)
    sched.abort(2)
    assert not sched.has_work() and kv.usage() == 0.0


def test_preemption_by_recompute_when_cache_is_full():
    sched, kv = make(capacity_blocks=2, budget=32)  # 16 tokens in all
    sched.add(seq(1, 7, 0.0))
    sched.add(seq(2, 7, 1.0))
    run_step(sched)  # both prefilled: 14 of 16 tokens
    out = decode_until_preempted(sched, 3)
    assert [s.seq_id for s in out.preempted] == [2]  # the latest arrival goes
    victim = out.preempted[0]
    assert victim.num_computed_tokens == 0 and victim.num_preemptions == 1
    assert victim.status is SequenceStatus.WAITING
    assert all(c.seq.seq_id != 2 for c in out.chunks)
    sched.finish(1)
    everything = victim.num_tokens
    assert run_step(sched) == {2: everything}  # recomputed from scratch


def test_sequence_larger_than_cache_is_rejected_not_stuck():
    sched, _ = make(capacity_blocks=1)
    sched.add(seq(1, 20))
    sched.add(seq(2, 3))
    out = sched.schedule()
    assert [s.seq_id for s in out.rejected] == [1]
    assert [c.seq.seq_id for c in out.chunks] == [2]


def test_fcfs_head_of_queue_is_not_overtaken():
    sched, _ = make(capacity_blocks=2, budget=64)
    sched.add(seq(1, 10, 0.0))
    run_step(sched)
    sched.add(seq(2, 12, 1.0))  # does not fit beside seq 1 yet
    sched.add(seq(3, 2, 2.0))  # would fit, but must not overtake seq 2
    assert set(run_step(sched)) == {1}
    sched.finish(1)
    assert set(run_step(sched)) == {2, 3}


def test_preempted_sequence_returns_before_later_arrivals_and_not_in_same_step():
    sched, kv = make(capacity_blocks=2, budget=32)  # 16 tokens
    sched.add(seq(1, 7, 0.0))
    sched.add(seq(2, 7, 1.0))
    run_step(sched)
    sched.add(seq(3, 2, 2.0))  # arrives after 2
    out = decode_until_preempted(sched, 4)
    assert [s.seq_id for s in out.preempted] == [2]
    assert {c.seq.seq_id for c in out.chunks} == {1}  # no admission right after preempting
    sched.finish(1)
    first = run_step(sched)
    assert 2 in first  # the preempted sequence is back first, ahead of 3


def test_prefix_caching_through_the_paged_cache():
    if "paged" not in registry.names("kv_cache"):
        pytest.skip("needs forge-plugin-kv-paged")
    kv = registry.create("kv_cache", "paged", SPEC, KVCacheConfig(block_size=4, num_blocks=16))
    sched = registry.create("scheduler", "continuous",
                            SchedulerConfig(max_batch_size=4, max_prefill_tokens=64,
                                            max_model_len=64), kv)
    a = seq(1, 10)
    sched.add(a)
    sched.schedule()
    a.num_computed_tokens = 10
    kv.commit(1, a.token_ids, 10)  # two full blocks published
    sched.finish(1)
    b = seq(2, 10)
    sched.add(b)
    out = sched.schedule()
    assert [(c.seq.seq_id, c.num_tokens) for c in out.chunks] == [(2, 2)]
    assert b.num_computed_tokens == 8
    c = seq(3, 8)  # exactly two cached blocks: one block is recomputed for logits
    sched.add(c)
    out = sched.schedule()
    assert [(ch.seq.seq_id, ch.num_tokens) for ch in out.chunks if ch.seq is c] == [(3, 4)]


def test_forked_sequence_joins_running_with_its_kv_or_queues_without_it():
    """n > 1: the engine forks a choice in the cache and adds it with num_computed > 0. It runs
    at once when the batch has room; otherwise its KV is freed and it waits for recompute
    (waiting sequences never hold KV)."""
    sched, kv = make(batch=2)
    assert sched.accepts_forked
    parent = seq(1, 5)
    sched.add(parent)
    run_step(sched)  # prompt computed, a token sampled
    child = Sequence(2, list(parent.token_ids[:5]) + [9], 5, max_tokens=8)
    kv.fork(1, 2)
    child.num_computed_tokens = 5
    sched.add(child)
    assert child.status is SequenceStatus.RUNNING and sched.num_waiting() == 0
    assert run_step(sched) == {1: 1, 2: 1}  # both decode; no prompt recompute
    late = Sequence(3, list(parent.token_ids[:5]) + [4], 5, max_tokens=8)
    kv.fork(1, 3)
    late.num_computed_tokens = 5
    used = kv.free_tokens()
    sched.add(late)  # the batch (2) is full
    assert late.status is SequenceStatus.WAITING and late.num_computed_tokens == 0
    assert kv.free_tokens() > used  # its forked KV was given back
    sched.finish(1)
    assert run_step(sched) == {2: 1, 3: 6}  # recomputed from scratch
