"""Turn a step's logits into next tokens, one row per sequence with its own settings; the order
of the steps is in docs/architecture.md. Logprobs are the log-softmax of the *raw* logits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from forge_kernel.engine.types import SamplingParams, TokenLogprob
from forge_kernel.interfaces.constraint import Constraint, mask_words

_GREEDY_EPS = 1e-5
_TOP_P_CANDIDATES = 1024


@dataclass(slots=True)
class SamplingRow:
    """What the sampler needs to know about one sequence this step."""

    params: SamplingParams
    prompt_ids: Sequence[int]
    output_ids: Sequence[int]
    generator: torch.Generator | None
    eos_ids: frozenset[int] = field(default_factory=frozenset)
    constraint: Constraint | None = None


def _needs_processing(p: SamplingParams, num_output: int) -> bool:
    return bool(p.logit_bias) or num_output < p.min_tokens or p.repetition_penalty != 1.0 \
        or p.presence_penalty != 0.0 or p.frequency_penalty != 0.0


def process_logits(logits: torch.Tensor, row: SamplingRow) -> torch.Tensor:
    """Apply bias, min-tokens masking and penalties to one row ``[V]`` (returns a new tensor)."""
    p = row.params
    x = logits.clone()  # [V]
    vocab = x.shape[0]
    if p.logit_bias:
        ids = torch.tensor([t for t in p.logit_bias if 0 <= t < vocab], dtype=torch.long)
        if ids.numel():
            x[ids] += torch.tensor([p.logit_bias[int(t)] for t in ids], dtype=x.dtype)
    if len(row.output_ids) < p.min_tokens:
        banned = [t for t in (*row.eos_ids, *p.stop_token_ids) if 0 <= t < vocab]
        if banned:
            x[torch.tensor(banned, dtype=torch.long)] = float("-inf")
    if p.repetition_penalty != 1.0:
        seen = torch.tensor(sorted({*row.prompt_ids, *row.output_ids}), dtype=torch.long)
        if seen.numel():
            vals = x[seen]
            x[seen] = torch.where(vals > 0, vals / p.repetition_penalty,
                                  vals * p.repetition_penalty)
    if (p.presence_penalty or p.frequency_penalty) and len(row.output_ids):
        out = torch.tensor(list(row.output_ids), dtype=torch.long)
        counts = torch.bincount(out, minlength=vocab)[:vocab].to(x.dtype)  # [V]
        x -= p.frequency_penalty * counts + p.presence_penalty * (counts > 0).to(x.dtype)
    return x


def sample_row(x: torch.Tensor, params: SamplingParams,
               generator: torch.Generator | None) -> int:
    """Draw one token from processed logits ``x [V]`` (greedy when temperature is 0)."""
    if params.temperature < _GREEDY_EPS:  # numpy's argmax: see sample()
        return int(x.numpy().argmax()) if x.device.type == "cpu" else int(torch.argmax(x))
    x = x / params.temperature
    vocab = x.shape[0]
    k = params.top_k if 0 < params.top_k < vocab else vocab
    if k == vocab and params.top_p < 1.0 and vocab > _TOP_P_CANDIDATES:
        # Sorting a 256k vocabulary per row per step is slow; the nucleus almost always lies
        # within the top few hundred tokens. Take the top candidates, and if their share of
        # the *full* distribution reaches top_p the nucleus is exactly inside them.
        vals, idx = torch.topk(x, _TOP_P_CANDIDATES)  # [C] descending
        full = torch.exp(vals - torch.logsumexp(x, dim=-1))  # [C] full-vocab probabilities
        if float(full.sum()) >= params.top_p:
            return _draw(*_nucleus(vals, idx, full, params.top_p), params, generator)
    if k < vocab or params.top_p < 1.0:
        # Only the candidate set needs sorting: top-k first keeps top-p cheap on big vocabs.
        vals, idx = torch.topk(x, k) if k < vocab else torch.sort(x, descending=True)  # [k]
        if params.top_p < 1.0:
            vals, idx = _nucleus(vals, idx, torch.softmax(vals, dim=-1), params.top_p)
    else:
        vals, idx = x, None
    return _draw(vals, idx, params, generator)


def _nucleus(vals: torch.Tensor, idx: torch.Tensor, probs: torch.Tensor,
             top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The smallest prefix of descending candidates whose mass reaches ``top_p`` (at least one)."""
    keep = (torch.cumsum(probs, dim=-1) - probs) < top_p
    return vals[keep], idx[keep]


def _draw(vals: torch.Tensor, idx: torch.Tensor | None, params: SamplingParams,
          generator: torch.Generator | None) -> int:
    """Apply min-p to candidate logits ``vals`` (ids ``idx``; ``None``: the whole vocab) and
    draw one."""
    probs = torch.softmax(vals, dim=-1)
    if params.min_p > 0.0:
        probs = torch.where(probs >= params.min_p * probs.max(), probs, torch.zeros_like(probs))
    choice = int(torch.multinomial(probs, 1, generator=generator))
    return choice if idx is None else int(idx[choice])


@dataclass(slots=True)
class _Masked:
    """The constrained rows' masked logits, and the rows whose mask allows no token at all."""

    logits: dict[int, torch.Tensor] = field(default_factory=dict)
    empty: set[int] = field(default_factory=set)


def _masked_logits(logits: torch.Tensor, rows: Sequence[SamplingRow],
                   constrained: list[int]) -> _Masked:
    """Each constrained row's logits with forbidden tokens ``-inf`` (new tensors: raw logits stay
    for logprobs); one bitmask fill per row, one vectorized unpack for all."""
    # numpy, not torch: every torch op here paid its OpenMP team's wake-up on a busy machine
    # (8 constrained rows: 176 ms -> a few ms per step, docs/structured-output.md).
    vocab = logits.shape[1]
    words = np.zeros((len(constrained), mask_words(vocab)), dtype=np.int32)
    rows_words = torch.from_numpy(words)  # the Constraint API fills torch views of it
    limited = [j for j, i in enumerate(constrained)
               if rows[i].constraint.allowed_tokens(rows_words[j])]
    if not limited:
        return _Masked()
    words = words[limited]
    # Bit t % 32 of little-endian word t // 32 is token t; unpack the complement: 1 = banned.
    banned = np.unpackbits(~words.view(np.uint8), axis=1, bitorder="little")[:, :vocab]
    rows_ids = [constrained[j] for j in limited]
    out = logits.numpy()[rows_ids]  # [L, V] copy; numpy: torch indexing took ~20 ms here
    np.copyto(out, np.float32("-inf"), where=banned.view(np.bool_))
    out = torch.from_numpy(out)
    return _Masked({i: out[k] for k, i in enumerate(rows_ids)},
                   {rows_ids[k] for k in np.flatnonzero(~words.any(axis=1)).tolist()})


def sample(
    logits: torch.Tensor, rows: Sequence[SamplingRow]
) -> list[tuple[int, TokenLogprob | None]]:
    """Sample one token per row of ``logits [N, V]``; return ``(token, logprob or None)``."""
    assert logits.shape[0] == len(rows), (logits.shape, len(rows))
    logits = logits.float()
    # Greedy rows with no processing are the common serving case: one batched argmax.
    plain_greedy = [i for i, r in enumerate(rows)
                    if r.params.temperature < _GREEDY_EPS and r.constraint is None
                    and not _needs_processing(r.params, len(r.output_ids))]
    constrained = [i for i, r in enumerate(rows) if r.constraint is not None]
    if logits.device.type != "cpu" and len(plain_greedy) < len(rows):
        logits = logits.cpu()  # per-row sampling: seeded generators and masks live on the CPU
    masked = _masked_logits(logits, rows, constrained) if constrained else _Masked()
    tokens: list[int | None] = [None] * len(rows)
    if plain_greedy:
        # numpy's argmax (first maximum, like torch's) is ~15x faster than torch.argmax on a
        # 262k-entry row (17 vs 240 us on two cores): a few percent of a decode step.
        every = len(plain_greedy) == len(rows)
        if logits.device.type == "cpu":  # numpy rows too: torch's row gather took ~20 ms here
            array = logits.detach().numpy()
            picked = (array if every else array[plain_greedy]).argmax(axis=-1).tolist()
        else:  # a device backend's logits: argmax there, copy back only the ids
            picked = torch.argmax(logits if every else logits[plain_greedy], dim=-1).tolist()
        for i, t in zip(plain_greedy, picked, strict=True):
            tokens[i] = int(t)
    for i, row in enumerate(rows):
        if tokens[i] is not None:
            continue
        x = masked.logits.get(i, logits[i])
        processed = _needs_processing(row.params, len(row.output_ids))
        if processed:
            x = process_logits(x, row)
        # Nothing allowed (an empty mask, seen on its packed words, or processing that masked
        # the rest, e.g. min_tokens banning the EOS a finished constraint requires): end the
        # sequence rather than emit a token outside the constraint. The 262k-entry isfinite
        # scan runs only after processing, not for every row.
        if i in masked.logits and (i in masked.empty
                                   or (processed and not bool(torch.isfinite(x).any()))):
            tokens[i] = min(row.eos_ids) if row.eos_ids else int(torch.argmax(masked.logits[i]))
        else:
            tokens[i] = sample_row(x, row.params, row.generator)
        if row.constraint is not None:
            row.constraint.accept(int(tokens[i]))
    return _with_logprobs(logits, rows, tokens)


def _with_logprobs(logits: torch.Tensor, rows: Sequence[SamplingRow],
                   tokens: list[int]) -> list[tuple[int, TokenLogprob | None]]:
    """``(token, logprob)`` per row; the logprob (and top ``k``) only where the row asks."""
    results: list[tuple[int, TokenLogprob | None]] = [(int(t), None) for t in tokens]
    want = [i for i, r in enumerate(rows) if r.params.logprobs is not None]
    if not want:
        return results
    logp = torch.log_softmax(logits[want], dim=-1)  # [W, V] raw model distribution
    for j, i in enumerate(want):
        k, tok = rows[i].params.logprobs or 0, int(tokens[i])
        top: list[tuple[int, float]] = []
        if k > 0:
            vals, idx = torch.topk(logp[j], k)
            top = [(int(a), float(b)) for a, b in zip(idx.tolist(), vals.tolist(), strict=True)]
        results[i] = (tok, TokenLogprob(tok, float(logp[j, tok]), top))
    return results
