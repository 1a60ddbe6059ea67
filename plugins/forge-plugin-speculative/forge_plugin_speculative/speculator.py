"""The object the engine holds (``LLMEngine.speculator``): before a step's forward pass it
drafts tokens for decode rows; after it, it verifies them and rolls the KV cache back.

Per step, for each decode row that can speculate:

1. ``propose``: the drafter suggests up to ``k`` tokens (``k`` adapts per sequence: doubled
   after a fully accepted draft, cut to the accepted length after a rejection, between 1 and
   ``num_speculative_tokens``); the row's KV allocation grows by the draft, so the target
   computes the row as one chunk of ``1 + k`` tokens with logits at every position, inside
   the normal continuously batched step;
2. ``verify``: rejection sampling (:mod:`forge_plugin_speculative.verify`) keeps ``a`` drafts
   and adds one token; ``num_computed_tokens`` advances by ``a`` and the cache is truncated
   there, dropping the rejected drafts' KV. The engine then appends the ``a + 1`` tokens,
   with stop strings, EOS and ``max_tokens`` checked token by token.

Rows that decode normally: structured-output rows (their matcher cannot be rolled back), a
choice's first token (it may fork siblings), rows without room for a draft (``max_tokens``,
context or KV cache), and n-gram rows whose context has no match. Penalties, ``logit_bias``,
``min_tokens``, seeds and logprobs are supported.
"""

from __future__ import annotations

from typing import Any

import torch

from forge_kernel.engine.sampler import SamplingRow
from forge_kernel.interfaces.scheduler import ScheduledChunk
from forge_kernel.interfaces.speculator import Speculator as SpeculatorInterface
from forge_plugin_speculative.draft_model import DraftModelProposer
from forge_plugin_speculative.ngram import NgramProposer
from forge_plugin_speculative.verify import row_logprobs, verify_row


class Speculator(SpeculatorInterface):
    """Drafts with ``proposer`` (n-gram or draft model), at most ``num_speculative_tokens``
    tokens per row and step."""

    def __init__(self, proposer: NgramProposer | DraftModelProposer,
                 num_speculative_tokens: int) -> None:
        if num_speculative_tokens < 1:
            raise ValueError(f"num_speculative_tokens must be >= 1, got "
                             f"{num_speculative_tokens}")
        self.proposer = proposer
        self.max_k = num_speculative_tokens
        self._k: dict[int, int] = {}  # seq_id -> current draft length
        self._q: dict[int, torch.Tensor | None] = {}  # this step's draft distributions
        self.draft_tokens = 0
        """Draft tokens verified so far."""
        self.accepted_tokens = 0
        self.verified_rows = 0
        """Row-steps that carried a draft (each emits accepted + 1 tokens)."""

    @property
    def method(self) -> str:
        return self.proposer.name

    def counts(self) -> tuple[int, int, int]:
        """``(draft_tokens, accepted_tokens, verified_rows)`` for the engine's stats."""
        return self.draft_tokens, self.accepted_tokens, self.verified_rows

    # -- before the forward pass ----------------------------------------------------------
    def propose(self, engine: Any, chunks: list[ScheduledChunk]) -> dict[int, list[int]]:
        """Draft tokens per ``seq_id`` for this step's decode rows (their KV allocated)."""
        self._collect(engine)  # a dict lookup per known sequence: cheap beside a forward
        kv = engine.kv_cache
        candidates = []
        for chunk in chunks:
            seq = chunk.seq
            if chunk.num_tokens != 1 or seq.num_computed_tokens + 1 != seq.num_tokens:
                continue  # prefill
            found = engine.row(seq.seq_id)
            if found is None:
                continue
            req, state = found
            if state.constraint is not None or not state.output_ids or state.forked:
                continue
            room = seq.max_tokens - len(state.output_ids) - 1  # the last token is the bonus
            k = min(self._k.setdefault(seq.seq_id, self.max_k), room)
            if k < 1 or not kv.can_allocate(seq.seq_id, seq.num_tokens + k):
                continue
            row = SamplingRow(req.params, req.prompt_ids, state.output_ids, state.generator,
                              engine.tokenizer.eos_ids)
            candidates.append((seq.seq_id, seq.token_ids, row, k))
        if not candidates:
            return {}
        drafts = self._draft(candidates)
        out: dict[int, list[int]] = {}
        for seq_id, token_ids, _, _ in candidates:
            draft = drafts.get(seq_id)
            if draft and kv.can_allocate(seq_id, len(token_ids) + len(draft[0])):
                kv.allocate(seq_id, len(token_ids) + len(draft[0]))
                out[seq_id] = draft[0]
                self._q[seq_id] = draft[1]
        return out

    def _draft(self, candidates) -> dict[int, tuple[list[int], torch.Tensor | None]]:
        self._q = {}
        if isinstance(self.proposer, NgramProposer):
            found = ((s, self.proposer.draft(ids, k)) for s, ids, _, k in candidates)
            return {s: (d, None) for s, d in found if d}
        return self.proposer.draft_many(candidates)

    def _collect(self, engine: Any) -> None:
        def alive(seq_id: int) -> bool:
            return engine.row(seq_id) is not None

        self._k = {s: k for s, k in self._k.items() if alive(s)}
        if isinstance(self.proposer, DraftModelProposer):
            self.proposer.collect(alive)

    # -- after the forward pass -----------------------------------------------------------
    def verify(self, engine: Any, rows: list, logits: torch.Tensor,
               drafts: dict[int, list[int]]) -> tuple[list, torch.Tensor, tuple[list, list]]:
        """Split the step's logits: drafted rows are verified here (``(rows, tokens)`` for
        the engine's postprocessing), the others keep one logits row each for the sampler."""
        spans, at = [], 0
        for _, state in rows:
            width = 1 + len(drafts.get(state.seq.seq_id, ()))
            spans.append((at, width))
            at += width
        if logits.shape[0] != at:
            raise RuntimeError(
                f"speculative decoding: the model returned {logits.shape[0]} logits rows for "
                f"{at} requested; it must honour SequenceChunk.num_logits")
        plain_rows, plain_idx, spec_rows, spec_tokens = [], [], [], []
        eos = engine.tokenizer.eos_ids
        for (req, state), (begin, width) in zip(rows, spans, strict=True):
            seq = state.seq
            if width == 1:
                plain_rows.append((req, state))
                plain_idx.append(begin)
                continue
            draft = drafts[seq.seq_id]
            x = logits[begin:begin + width]  # [1 + k, V]
            row = SamplingRow(req.params, req.prompt_ids, state.output_ids, state.generator, eos)
            tokens, accepted = verify_row(x, draft, self._q.pop(seq.seq_id, None), row)
            seq.num_computed_tokens += accepted  # the accepted drafts' KV stays
            engine.kv_cache.truncate(seq.seq_id, seq.num_computed_tokens)
            self._adapt(seq.seq_id, len(draft), accepted)
            if req.params.logprobs is not None:
                results = list(zip(tokens, row_logprobs(x, tokens, req.params.logprobs),
                                   strict=True))
            else:
                results = [(t, None) for t in tokens]
            spec_rows.append((req, state))
            spec_tokens.append(results)
        return plain_rows, logits[plain_idx], (spec_rows, spec_tokens)

    def _adapt(self, seq_id: int, drafted: int, accepted: int) -> None:
        self.draft_tokens += drafted
        self.accepted_tokens += accepted
        self.verified_rows += 1
        k = self._k.get(seq_id, self.max_k)
        if accepted == drafted:
            self._k[seq_id] = min(self.max_k, 2 * k)
        else:
            self._k[seq_id] = max(1, accepted)
