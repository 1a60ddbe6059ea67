"""Sampling on the device the logits are on: only token ids cross to the host.

:func:`sample_on_device` has the kernel sampler's signature and results format
(:func:`forge_kernel.engine.sampler.sample`). Rows the serving hot path produces (greedy, or
temperature with top-k / top-p / min-p) are done in batch on the device:

* greedy rows: one ``argmax`` over the batch;
* sampled rows: one descending ``sort`` of the scaled logits, per-row top-k / top-p / min-p
  masks from ranks and cumulative probabilities, then the exponential race
  (``argmax(p / E)``, ``E ~ Exp(1)``: an exact draw from ``p`` without a cumulative sum
  search), the noise from a device generator seeded from the row's own ``torch.Generator``.
  A seeded request is therefore reproducible on the same device, but its tokens differ from
  the CPU sampler's (a different random stream), as with any other engine.

Rows that need more (logit bias, penalties, ``min_tokens``, constraints, logprobs) go to the
kernel sampler unchanged, on the host: identical semantics, one row's logits copied.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from forge_kernel.engine.sampler import SamplingRow, sample

_GREEDY_EPS = 1e-5  # the kernel sampler's threshold for "temperature 0"


def _plain(row: SamplingRow) -> bool:
    p = row.params
    return not (p.logit_bias or len(row.output_ids) < p.min_tokens
                or p.repetition_penalty != 1.0 or p.presence_penalty or p.frequency_penalty
                or p.logprobs is not None or getattr(row, "constraint", None) is not None)


def _noise_seed(row: SamplingRow) -> int:
    """A 63-bit seed for this step's device noise, drawn from the row's generator (so a seeded
    request's noise sequence is fixed) or from torch's global generator."""
    return int(torch.randint(0, 2**63 - 1, (1,), generator=row.generator))


def _draw(logits: torch.Tensor, rows: Sequence[SamplingRow]) -> torch.Tensor:
    """One token per row of ``logits [R, V]`` (all rows temperature > 0, plain)."""
    dev = logits.device
    temps = torch.tensor([r.params.temperature for r in rows], device=dev)[:, None]
    x = logits / temps
    vals, idx = torch.sort(x, dim=-1, descending=True)  # [R, V]
    probs = torch.softmax(vals, dim=-1)
    vocab = x.shape[1]
    ks = torch.tensor([r.params.top_k if 0 < r.params.top_k < vocab else vocab for r in rows],
                      device=dev)[:, None]
    top_p = torch.tensor([r.params.top_p for r in rows], device=dev)[:, None]
    min_p = torch.tensor([r.params.min_p for r in rows], device=dev)[:, None]
    rank = torch.arange(vocab, device=dev)[None, :]
    keep = rank < ks
    # top-p over the top-k candidates, renormalized as the kernel sampler does
    kept = torch.where(keep, probs, torch.zeros_like(probs))
    kept = kept / kept.sum(-1, keepdim=True)
    keep &= (torch.cumsum(kept, -1) - kept) < top_p  # always keeps rank 0
    kept = torch.where(keep, kept, torch.zeros_like(kept))
    keep &= kept >= min_p * kept[:, :1]  # min-p against the most likely token
    weights = torch.where(keep, kept, torch.zeros_like(kept))
    noise = torch.empty_like(weights)
    for i, row in enumerate(rows):
        gen = torch.Generator(device=dev)
        gen.manual_seed(_noise_seed(row))
        noise[i].exponential_(generator=gen)
    choice = torch.argmax(weights / noise, dim=-1, keepdim=True)  # [R, 1] rank of the token
    return idx.gather(1, choice)[:, 0]


def sample_on_device(logits: torch.Tensor, rows: Sequence[SamplingRow]) -> list:
    """Sample one token per row of ``logits [N, V]`` (any device); returns what
    :func:`forge_kernel.engine.sampler.sample` returns: ``[(token, logprob or None)]``."""
    if logits.shape[0] != len(rows):
        raise ValueError(f"{logits.shape[0]} logits rows for {len(rows)} sampling rows")
    logits = logits.float()
    results: list = [None] * len(rows)
    greedy = [i for i, r in enumerate(rows) if _plain(r) and r.params.temperature < _GREEDY_EPS]
    drawn = [i for i, r in enumerate(rows) if _plain(r) and r.params.temperature >= _GREEDY_EPS]
    parts, order = [], []
    if greedy:
        parts.append(torch.argmax(logits[greedy], dim=-1))
        order += greedy
    if drawn:
        parts.append(_draw(logits[drawn], [rows[i] for i in drawn]))
        order += drawn
    if parts:
        tokens = torch.cat(parts).tolist()  # the step's one device-to-host copy
        for i, t in zip(order, tokens, strict=True):
            results[i] = (int(t), None)
    rest = [i for i, r in enumerate(results) if r is None]
    if rest:
        host = sample(logits[rest].cpu(), [rows[i] for i in rest])
        for i, r in zip(rest, host, strict=True):
            results[i] = r
    return results
