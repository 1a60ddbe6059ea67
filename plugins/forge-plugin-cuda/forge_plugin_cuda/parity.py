"""Greedy generation straight through a model and a KV cache (no engine, no scheduler), used
to compare backends token for token: the CPU tests and ``scripts/device_check.py``.

All prompts are prefilled in one mixed batch, then decoded together, so the check covers
multi-sequence prefill, batched decode, and (with prompts of different lengths) ragged
block tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from forge_kernel.interfaces.batch import ForwardBatch, SequenceChunk


def place_rope_tables(model: object, device: torch.device | str) -> bool:
    """Move a ``DecoderLM``'s rotary tables to ``device``; True when it had to.

    A shim for ``forge-plugin-models`` versions whose ``RotaryTable`` always lives on the CPU
    (its rows are then applied to device activations, which torch refuses). Growing a table
    past its initial 4096 positions rebuilds it on the CPU again, so this only serves checks
    with short sequences; the real fix belongs in the models plugin (see docs/gpu.md)."""
    spec = getattr(model, "spec", None)
    tables = getattr(spec, "rope_tables", None) or []
    moved = False
    for table in tables:
        if table.cos.device != torch.device(device):
            table.cos, table.sin = table.cos.to(device), table.sin.to(device)
            moved = True
    return moved


def _step(model, cache, chunks: list[SequenceChunk], ids: list[int], positions: list[int]):
    batch = ForwardBatch(torch.tensor(ids, dtype=torch.long),
                         torch.tensor(positions, dtype=torch.long), chunks)
    if hasattr(cache, "begin_step"):
        cache.begin_step(batch)
    return model.forward(batch, cache)  # [len(chunks), V]


def greedy_generate(model, cache, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                    pick: Callable[[torch.Tensor], list[int]] | None = None) -> list[list[int]]:
    """``max_new_tokens`` greedy tokens for every prompt (sequence ids ``1..len(prompts)``,
    freed afterwards). ``pick`` turns logits ``[N, V]`` into tokens (default: argmax where
    the logits are, one copy of the ids to the host)."""
    pick = pick or (lambda logits: logits.argmax(-1).tolist())
    seqs = list(range(1, len(prompts) + 1))
    outputs: list[list[int]] = [[] for _ in prompts]
    try:
        chunks, ids, positions = [], [], []
        for seq, prompt in zip(seqs, prompts, strict=True):
            cache.allocate(seq, len(prompt))
            chunks.append(SequenceChunk(seq, 0, len(prompt)))
            ids += list(prompt)
            positions += list(range(len(prompt)))
        tokens = pick(_step(model, cache, chunks, ids, positions))
        for i, t in enumerate(tokens):
            outputs[i].append(int(t))
        for _ in range(max_new_tokens - 1):
            chunks, positions = [], []
            for i, seq in enumerate(seqs):
                pos = len(prompts[i]) + len(outputs[i]) - 1
                cache.allocate(seq, pos + 1)
                chunks.append(SequenceChunk(seq, pos, 1))
                positions.append(pos)
            tokens = pick(_step(model, cache, chunks, [o[-1] for o in outputs], positions))
            for i, t in enumerate(tokens):
                outputs[i].append(int(t))
    finally:
        for seq in seqs:
            cache.free(seq)
    return outputs
