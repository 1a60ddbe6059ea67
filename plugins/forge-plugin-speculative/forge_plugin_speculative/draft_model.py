"""Draft-model drafts: a smaller model with the same tokenizer proposes ``k`` tokens per row,
autoregressively, all rows batched (one draft forward per draft position per step).

The draft model keeps its own KV cache. For every sequence it remembers which tokens that
cache holds; at each step it keeps the longest prefix still shared with the sequence (the
accepted drafts survive, rejected ones are truncated), computes what is missing (the first
time: the prompt) and drafts from there. Sequences that ended are freed lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from forge_kernel.engine.sampler import SamplingRow
from forge_kernel.errors import ConfigError
from forge_kernel.interfaces.batch import ForwardBatch, SequenceChunk
from forge_kernel.interfaces.kv_cache import KVCache
from forge_kernel.interfaces.model import CausalLM
from forge_kernel.interfaces.tokenizer import Tokenizer
from forge_plugin_speculative.verify import is_greedy, target_probs

Candidate = tuple[int, Sequence[int], SamplingRow, int]
"""``(seq_id, token_ids, sampling row, k)``: a row to draft ``k`` tokens for."""


def check_vocab(target: Tokenizer, draft: Tokenizer, target_vocab: int, draft_vocab: int,
                name: str) -> None:
    """Refuse a draft model whose token ids mean something else than the target's."""
    if target_vocab != draft_vocab or target.vocab_size != draft.vocab_size:
        raise ConfigError(
            f"draft model {name!r} has a vocabulary of {draft_vocab} logits / "
            f"{draft.vocab_size} tokens, the target {target_vocab} / {target.vocab_size}: "
            f"speculative decoding needs the same tokenizer")
    for i in range(target.vocab_size):
        if target.id_to_piece(i) != draft.id_to_piece(i):
            raise ConfigError(
                f"draft model {name!r}: token {i} is {draft.id_to_piece(i)!r}, the target's is "
                f"{target.id_to_piece(i)!r}; speculative decoding needs the same tokenizer")


class DraftModelProposer:
    """Drafts with ``model`` over ``kv_cache`` (which must support truncate)."""

    name = "draft"

    def __init__(self, model: CausalLM, kv_cache: KVCache) -> None:
        if not kv_cache.supports_truncate:
            raise ConfigError(f"the draft model's KV cache {kv_cache.name!r} cannot truncate")
        self.model, self.kv = model, kv_cache
        self._cached: dict[int, list[int]] = {}  # seq_id -> tokens whose KV the cache holds

    def collect(self, alive: Callable[[int], bool]) -> None:
        """Free the draft KV of sequences that ended."""
        for seq_id in [s for s in self._cached if not alive(s)]:
            self.kv.free(seq_id)
            del self._cached[seq_id]

    def _sync(self, seq_id: int, token_ids: Sequence[int], k: int) -> int | None:
        """Roll the draft cache back to the prefix it shares with ``token_ids`` and allocate
        room for drafting ``k`` tokens; returns where computing starts, None if no room."""
        have = self._cached.get(seq_id, [])
        keep = 0
        limit = min(len(have), len(token_ids) - 1)  # the last token is always recomputed
        while keep < limit and have[keep] == token_ids[keep]:
            keep += 1
        self.kv.truncate(seq_id, keep)
        total = len(token_ids) + k - 1
        if not self.kv.can_allocate(seq_id, total):
            self.kv.free(seq_id)
            self._cached.pop(seq_id, None)
            return None
        self.kv.allocate(seq_id, total)
        self._cached[seq_id] = list(token_ids[:keep])
        return keep

    def _forward(self, pieces: list[tuple[int, int, list[int]]]) -> torch.Tensor:
        """One draft step over ``(seq_id, start, tokens)`` pieces; logits ``[pieces, V]``."""
        ids, pos, chunks = [], [], []
        for seq_id, start, tokens in pieces:
            ids += tokens
            pos += range(start, start + len(tokens))
            chunks.append(SequenceChunk(seq_id, start, len(tokens)))
            self._cached[seq_id] += tokens
        batch = ForwardBatch(torch.tensor(ids, dtype=torch.long),
                             torch.tensor(pos, dtype=torch.long), chunks)
        self.kv.begin_step(batch)
        return self.model.forward(batch, self.kv).float()

    def draft_many(self, rows: list[Candidate]
                   ) -> dict[int, tuple[list[int], torch.Tensor | None]]:
        """Drafts and their distributions ``q [k, V]`` (``None`` for greedy rows: point
        masses) for each candidate that fits in the draft cache."""
        live: list[tuple[int, SamplingRow, int]] = []
        pieces = []
        for seq_id, token_ids, row, k in rows:
            start = self._sync(seq_id, token_ids, k)
            if start is not None:
                live.append((seq_id, row, k))
                pieces.append((seq_id, start, list(token_ids[start:])))
        out: dict[int, tuple[list[int], list[torch.Tensor]]] = {s: ([], []) for s, _, _ in live}
        while live:
            logits = self._forward(pieces)
            pieces, still = [], []
            for (seq_id, row, k), x in zip(live, logits, strict=True):
                draft, dists = out[seq_id]
                if is_greedy(row.params):
                    draft.append(int(torch.argmax(x)))
                else:
                    q = target_probs(x.cpu(), row.params)  # the generator is a CPU one
                    draft.append(int(torch.multinomial(q, 1, generator=row.generator)))
                    dists.append(q)
                if len(draft) < k:
                    start = len(self._cached[seq_id])
                    pieces.append((seq_id, start, [draft[-1]]))
                    still.append((seq_id, row, k))
            live = still
        return {s: (d, torch.stack(q) if q else None) for s, (d, q) in out.items()}
