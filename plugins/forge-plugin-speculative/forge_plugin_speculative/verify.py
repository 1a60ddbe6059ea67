"""Verification of one drafted row: the standard speculative rejection-sampling rule
(Leviathan et al. 2023; Chen et al. 2023), so accepted tokens have exactly the target's
distribution.

For draft token ``d`` at position ``i`` with target distribution ``p`` and draft distribution
``q`` (a point mass for n-gram drafts): accept with probability ``min(1, p[d] / q[d])``; on the
first rejection, draw from ``norm(max(0, p - q))`` and stop; if every draft is accepted, draw a
bonus token from the last position's ``p``. Greedy rows (temperature 0) reduce to: accept while
the draft equals the target's argmax, then emit the argmax, so the tokens are exactly those of
non-speculative greedy decoding.

``p`` is what the kernel's sampler draws from (:mod:`forge_kernel.engine.sampler`): bias,
``min_tokens`` and penalties over the output *including the accepted drafts before position
``i``*, then temperature, top-k, top-p and min-p. Logprobs are the raw model's, as there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from forge_kernel.engine.sampler import SamplingRow, process_logits
from forge_kernel.engine.types import SamplingParams, TokenLogprob

GREEDY_EPS = 1e-5
"""Temperatures below this are greedy (the sampler's threshold)."""
_CANDIDATES = 1024


def is_greedy(params: SamplingParams) -> bool:
    return params.temperature < GREEDY_EPS


def needs_processing(params: SamplingParams, num_output: int) -> bool:
    """Whether the sampler transforms this row's logits before choosing (as it decides)."""
    p = params
    return bool(p.logit_bias) or num_output < p.min_tokens or p.repetition_penalty != 1.0 \
        or p.presence_penalty != 0.0 or p.frequency_penalty != 0.0


def target_probs(x: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """The distribution ``[V]`` the sampler draws from for processed logits ``x [V]``
    (temperature > 0): softmax of ``x / T`` restricted by top-k, top-p, min-p, renormalized."""
    x = x.float() / params.temperature
    vocab = x.shape[0]
    k = params.top_k if 0 < params.top_k < vocab else vocab
    if k == vocab and params.top_p < 1.0 and vocab > _CANDIDATES:
        # As the sampler: the nucleus almost always lies in the top candidates.
        vals, idx = torch.topk(x, _CANDIDATES)
        full = torch.exp(vals - torch.logsumexp(x, dim=-1))
        if float(full.sum()) < params.top_p:
            vals, idx = torch.sort(x, descending=True)
    elif k < vocab:
        vals, idx = torch.topk(x, k)
    elif params.top_p < 1.0:
        vals, idx = torch.sort(x, descending=True)
    else:
        vals, idx = x, None
    probs = torch.softmax(vals, dim=-1)
    if idx is not None and params.top_p < 1.0:
        if k == vocab:  # nucleus over the full distribution (the sampler's candidate path)
            share = torch.exp(vals - torch.logsumexp(x, dim=-1))
        else:  # nucleus over the renormalized top-k
            share = probs
        cum = torch.cumsum(share, dim=-1)
        probs = torch.where((cum - share) < params.top_p, probs, torch.zeros_like(probs))
    if params.min_p > 0.0:
        probs = torch.where(probs >= params.min_p * probs.max(), probs, torch.zeros_like(probs))
    probs = probs / probs.sum()
    if idx is None:
        return probs
    return torch.zeros(vocab, dtype=probs.dtype).index_copy_(0, idx, probs)


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    return int(torch.multinomial(probs, 1, generator=generator))


def verify_row(logits: torch.Tensor, draft: Sequence[int], q: torch.Tensor | None,
               row: SamplingRow) -> tuple[list[int], int]:
    """Verify ``draft`` (``k`` tokens) against the target's ``logits [k + 1, V]`` (row ``i``:
    next-token logits after the draft's first ``i`` tokens). ``q [k, V]`` is the draft model's
    distribution per draft token, ``None`` for a point mass. Returns the tokens to emit (the
    accepted drafts plus one resampled or bonus token) and how many drafts were accepted."""
    params, out = row.params, list(row.output_ids)
    greedy = is_greedy(params)
    plain = not needs_processing(params, len(out))  # (penalties never switch back on)
    if greedy and plain:  # the common case: one argmax over every position
        best = logits.argmax(dim=-1).tolist()
        a = 0
        while a < len(draft) and draft[a] == best[a]:
            a += 1
        return [*draft[:a], best[a]], a
    logits = logits.float().cpu()  # as the sampler: generators and penalties live on the CPU
    tokens: list[int] = []
    for i in range(len(draft) + 1):
        x = logits[i]
        if not plain and needs_processing(params, len(out) + i):
            hypo = SamplingRow(params, row.prompt_ids, out + tokens, row.generator, row.eos_ids)
            x = process_logits(x, hypo)
        if greedy:
            best = int(torch.argmax(x))
            if i < len(draft) and draft[i] == best:
                tokens.append(best)
                continue
            return [*tokens, best], i
        p = target_probs(x, params)
        if i == len(draft):  # every draft accepted: the bonus token
            return [*tokens, _draw(p, row.generator)], i
        d = draft[i]
        qd = 1.0 if q is None else float(q[i, d])
        u = float(torch.rand((), generator=row.generator))
        if qd > 0.0 and u * qd < float(p[d]):  # u < p/q, i.e. accepted with min(1, p/q)
            tokens.append(d)
            continue
        if q is None:
            residual = p.clone()
            residual[d] = 0.0
        else:
            residual = torch.clamp(p - q[i].to(p.dtype), min=0.0)
        if float(residual.sum()) <= 0.0:  # p <= q everywhere only if p == q: draw from p
            residual = p
        return [*tokens, _draw(residual / residual.sum(), row.generator)], i
    raise AssertionError("unreachable")  # pragma: no cover


def row_logprobs(logits: torch.Tensor, tokens: Sequence[int],
                 top: int) -> list[TokenLogprob]:
    """Raw-model logprobs of ``tokens[i]`` from ``logits[i]`` (plus the ``top`` best)."""
    logp = torch.log_softmax(logits[:len(tokens)].float(), dim=-1)
    out = []
    for i, tok in enumerate(tokens):
        best: list[tuple[int, float]] = []
        if top > 0:
            vals, idx = torch.topk(logp[i], top)
            best = list(zip(idx.tolist(), vals.tolist(), strict=True))
        out.append(TokenLogprob(int(tok), float(logp[i, tok]), best))
    return out
