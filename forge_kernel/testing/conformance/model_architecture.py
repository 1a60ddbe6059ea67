"""Conformance helpers for :class:`~forge_kernel.interfaces.model.CausalLM` implementations.

Drive a built model directly (no engine, no scheduler): run a prompt whole or in chunks, batch
several sequences into one step, decode greedily. :func:`check_causal_lm` asserts the invariants
every architecture must keep, whatever its numerics:

* chunked prefill gives the same next-token logits as one pass;
* a batch of sequences gives each the logits it gets alone;
* ``needs_logits=False`` chunks produce no row;
* logits are float32 ``[rows, vocab_size]`` and writable in place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from forge_kernel.interfaces.kv_cache import KVCache
    from forge_kernel.interfaces.model import CausalLM

CacheFactory = Callable[[], "KVCache"]


def naive_cache_factory(model: CausalLM, budget_tokens: int = 4096) -> CacheFactory:
    """A factory of fresh ``naive`` caches sized for ``budget_tokens`` tokens of ``model``."""
    from forge_kernel.interfaces.kv_cache import KVCacheConfig
    from forge_kernel.plugins import get_host

    spec = model.kv_cache_spec()
    config = KVCacheConfig(memory_budget_bytes=budget_tokens * spec.bytes_per_token)
    return lambda: get_host().registry.create("kv_cache", "naive", spec, config)


def step(model: CausalLM, cache: KVCache, pieces: Sequence[tuple[int, int, Sequence[int], bool]]
         ) -> torch.Tensor:
    """One forward step. ``pieces``: ``(seq_id, start_pos, token_ids, needs_logits)`` per chunk;
    allocates each sequence up to the chunk's end first."""
    import torch

    from forge_kernel.interfaces.batch import ForwardBatch, SequenceChunk

    chunks, ids, positions = [], [], []
    for seq_id, start, tokens, needs_logits in pieces:
        cache.allocate(seq_id, start + len(tokens))
        chunks.append(SequenceChunk(seq_id, start, len(tokens), needs_logits))
        ids.extend(int(t) for t in tokens)
        positions.extend(range(start, start + len(tokens)))
    batch = ForwardBatch(torch.tensor(ids, dtype=torch.long),
                         torch.tensor(positions, dtype=torch.long), chunks)
    cache.begin_step(batch)
    return model.forward(batch, cache)


def prefill(model: CausalLM, cache: KVCache, ids: Sequence[int], seq_id: int = 0,
            chunk_sizes: Sequence[int] | None = None) -> torch.Tensor:
    """Run a prompt (in chunks of ``chunk_sizes`` if given, which must sum to ``len(ids)``);
    return the last token's logits ``[vocab]``."""
    sizes = list(chunk_sizes) if chunk_sizes else [len(ids)]
    if sum(sizes) != len(ids):
        raise ValueError(f"chunk sizes {sizes} do not add up to the prompt length {len(ids)}")
    start = 0
    logits = None
    for i, n in enumerate(sizes):
        last = i == len(sizes) - 1
        out = step(model, cache, [(seq_id, start, ids[start:start + n], last)])
        if not last and out.shape[0] != 0:
            raise AssertionError(f"inner prefill chunk returned {out.shape[0]} logit rows, not 0")
        logits = out
        start += n
    return logits[0]


def greedy(model: CausalLM, cache: KVCache, ids: Sequence[int], max_new_tokens: int,
           seq_id: int = 0, chunk_sizes: Sequence[int] | None = None) -> list[int]:
    """Greedy continuation of ``ids``: prefill, then one-token decode steps."""
    logits = prefill(model, cache, ids, seq_id, chunk_sizes)
    out: list[int] = []
    pos = len(ids)
    while True:
        token = int(logits.argmax())
        out.append(token)
        if len(out) == max_new_tokens:
            return out
        logits = step(model, cache, [(seq_id, pos, [token], True)])[0]
        pos += 1


def greedy_batch(model: CausalLM, cache: KVCache, prompts: Sequence[Sequence[int]],
                 max_new_tokens: int, num_chunks: int = 1) -> list[list[int]]:
    """Greedy continuations of several prompts run together: every step carries one chunk of
    each sequence (prefill split into ``num_chunks`` near-equal chunks), then all sequences
    decode one token per step in a single batch. Sequence ``i`` uses seq_id ``i``."""
    starts = [0] * len(prompts)
    logits = None
    for c in range(num_chunks):
        pieces = []
        for i, ids in enumerate(prompts):
            end = len(ids) * (c + 1) // num_chunks
            pieces.append((i, starts[i], ids[starts[i]:end], c == num_chunks - 1))
            starts[i] = end
        pieces = [p for p in pieces if p[2] or p[3]]
        logits = step(model, cache, pieces)
    outs: list[list[int]] = [[] for _ in prompts]
    while True:
        for i, row in enumerate(logits):
            outs[i].append(int(row.argmax()))
        if len(outs[0]) == max_new_tokens:
            return outs
        logits = step(model, cache, [(i, len(ids) + len(outs[i]) - 1, [outs[i][-1]], True)
                                     for i, ids in enumerate(prompts)])


def check_causal_lm(model: CausalLM, make_cache: CacheFactory, prompts: Sequence[Sequence[int]],
                    rtol: float = 1e-4, atol: float = 1e-4) -> None:
    """Assert chunk, batch and shape invariants on ``prompts`` (each at least 2 tokens)."""
    import torch

    vocab = model.config.vocab_size
    alone = []
    for ids in prompts:
        whole = prefill(model, make_cache(), ids)
        assert whole.dtype == torch.float32 and tuple(whole.shape) == (vocab,), whole.shape
        whole.add_(0.0)  # samplers edit logits in place: no inference-mode tensors
        half = len(ids) // 2
        chunked = prefill(model, make_cache(), ids, chunk_sizes=[half, len(ids) - half])
        torch.testing.assert_close(chunked, whole, rtol=rtol, atol=atol,
                                   msg=lambda m: f"chunked prefill differs: {m}")
        alone.append(whole)
    cache = make_cache()
    batched = step(model, cache, [(i, 0, ids, True) for i, ids in enumerate(prompts)])
    assert tuple(batched.shape) == (len(prompts), vocab), batched.shape
    for i, ref in enumerate(alone):
        torch.testing.assert_close(batched[i], ref, rtol=rtol, atol=atol,
                                   msg=lambda m, i=i: f"sequence {i} differs in a batch: {m}")
    # Only chunks that ask for logits get a row.
    cache = make_cache()
    out = step(model, cache, [(0, 0, prompts[0], False), (1, 0, prompts[-1], True)])
    assert tuple(out.shape) == (1, vocab), out.shape
