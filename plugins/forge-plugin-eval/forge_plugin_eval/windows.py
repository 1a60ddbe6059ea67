"""Token windows through the model, each window its own sequence starting at position 0.

``batch`` is the most tokens one forward step holds (llama-perplexity's ``-b``): with
``batch >= ctx`` several whole windows share a step (as llama.cpp packs ``n_batch / n_ctx``
sequences), with ``batch < ctx`` each window is prefilled in pieces through the KV cache. Either
way every window sees exactly its own tokens, so the result does not depend on ``batch``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import torch

from forge_kernel.interfaces.batch import ForwardBatch, SequenceChunk
from forge_kernel.interfaces.kv_cache import KVCacheConfig
from forge_plugin_eval.errors import EvalError
from forge_plugin_eval.model import EvalModel


def _cache(em: EvalModel, ctx: int, sequences: int):
    from forge_kernel.plugins import get_host

    spec = em.model.kv_cache_spec()
    if ctx > spec.max_model_len:
        raise EvalError(f"ctx={ctx} exceeds the model's context length {spec.max_model_len}")
    spec = dataclasses.replace(spec, max_model_len=ctx)
    config = KVCacheConfig(memory_budget_bytes=sequences * ctx * spec.bytes_per_token)
    return get_host().registry.create("kv_cache", "naive", spec, config)


def _steps(count: int, ctx: int, batch: int) -> Iterator[list[tuple[int, int, int]]]:
    """Steps as lists of ``(window, begin, end)`` token ranges."""
    if batch >= ctx:
        per_step = batch // ctx
        for first in range(0, count, per_step):
            yield [(w, 0, ctx) for w in range(first, min(count, first + per_step))]
    else:
        for w in range(count):
            for begin in range(0, ctx, batch):
                yield [(w, begin, min(ctx, begin + batch))]


def run_windows(em: EvalModel, windows: Sequence[Sequence[int]], batch: int,
                rows: tuple[int, int] | None) -> Iterator[tuple[int, torch.Tensor | None]]:
    """Run equal-length ``windows``; yield ``(index, logits)`` as each window completes, with
    float32 logits ``[hi - lo, vocab]`` of positions ``lo..hi-1`` for ``rows=(lo, hi)`` (or
    ``None`` when ``rows`` is ``None``: a pass for its side effects, e.g. activation hooks)."""
    if not windows:
        return
    ctx = len(windows[0])
    if batch < 1:
        raise EvalError(f"batch must be a positive number of tokens, got {batch}")
    cache = _cache(em, ctx, max(1, batch // ctx))
    kept: dict[int, list[torch.Tensor]] = {}
    for step in _steps(len(windows), ctx, batch):
        chunks, ids, positions = [], [], []
        for w, begin, end in step:
            cache.allocate(w, end)
            chunks.append(SequenceChunk(w, begin, end - begin, False))
            ids.extend(int(t) for t in windows[w][begin:end])
            positions.extend(range(begin, end))
        fb = ForwardBatch(torch.tensor(ids, dtype=torch.long),
                          torch.tensor(positions, dtype=torch.long), chunks)
        cache.begin_step(fb)
        hidden = em.model.hidden_states(fb, cache)
        offset = 0
        for w, begin, end in step:
            if rows is not None:
                lo, hi = max(rows[0], begin), min(rows[1], end)
                if lo < hi:
                    kept.setdefault(w, []).append(hidden[offset + lo - begin:offset + hi - begin])
            offset += end - begin
            if end == ctx:
                cache.free(w)
                if rows is None:
                    yield w, None
                else:
                    with torch.no_grad():
                        yield w, em.logits(torch.cat(kept.pop(w)))
