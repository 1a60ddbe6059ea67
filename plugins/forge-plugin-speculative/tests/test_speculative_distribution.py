"""Seeded sampling with speculation keeps the target's distribution.

On a tiny random model, thousands of seeded requests (deterministic seeds 0..N-1, so the test
is reproducible) sample three tokens each with speculation on. Token 1 comes from the prompt's
prefill; tokens 2 and 3 pass through the accept / resample rule (a draft is proposed at the
decode step after token 1). The empirical joint distribution of (t1, t2, t3) is compared with
the target's exact one, computed from the model's logits: chi-square over cells with
expected count >= 5 (the rest pooled). The rule itself is also checked alone on fixed logits
with 20000 draws, where :func:`test_the_check_has_power` shows the test rejects the classic
mistakes.

Two drafters: a draft model (``q`` a full distribution, flatter than ``p``) and a
fixed point-mass drafter (as n-gram drafts are) that proposes one likely and one unlikely
token. A broken rule (accepting with p instead of min(1, p/q), resampling from p instead of
the residual, ...) moves mass by far more than the thresholds allow.
"""

from __future__ import annotations

import pytest
import torch
from forge_plugin_speculative import verify
from forge_plugin_speculative.draft_model import DraftModelProposer
from forge_plugin_speculative.ngram import NgramProposer
from forge_plugin_speculative.speculator import Speculator
from forge_plugin_speculative.verify import target_probs
from spec_helpers import make_cache, make_engine, run_all, tiny_model, token_ids

from forge_kernel.engine.types import SamplingParams
from forge_kernel.testing.conformance.model_architecture import naive_cache_factory, prefill

stats = pytest.importorskip("scipy.stats")

PROMPT = [1, 17, 42, 5, 99, 230, 7, 42, 5]
PARAMS = dict(temperature=0.5, top_k=5, max_tokens=3, ignore_eos=True)
N = 3000


def _exact_joint(model, params) -> dict[tuple[int, ...], float]:
    make = naive_cache_factory(model)
    joint: dict[tuple[int, ...], float] = {(): 1.0}
    for _ in range(params.max_tokens):
        nxt = {}
        for prefix, mass in joint.items():
            p = target_probs(prefill(model, make(), PROMPT + list(prefix)), params)
            for t in torch.nonzero(p).flatten().tolist():
                nxt[(*prefix, t)] = mass * float(p[t])
        joint = nxt
    return joint


class Flattened:
    """A draft model that is the target with its logits halved: the same support, a flatter
    ``q`` (so drafts are accepted often, rejected often, and the residual matters)."""

    def __init__(self, model) -> None:
        self.model, self.config = model, model.config

    def kv_cache_spec(self):
        return self.model.kv_cache_spec()

    def forward(self, batch, kv_cache):
        return self.model.forward(batch, kv_cache) * 0.5


def _draft_model(model) -> Speculator:
    return Speculator(DraftModelProposer(Flattened(model), make_cache(model, num_blocks=800)),
                      2)


class FixedDrafts(NgramProposer):
    """Point-mass drafts: always the same two tokens."""

    def __init__(self, tokens: list[int]) -> None:
        super().__init__()
        self.tokens = tokens

    def draft(self, token_ids, k):
        return self.tokens[:k]


def _sample(model, speculator) -> dict[tuple[int, ...], int]:
    """Counts of the (t1, t2, t3) each seed 0..N-1 produced, all requests batched."""
    engine = make_engine(model, speculator, max_batch_size=256, max_prefill_tokens=2048,
                         num_blocks=800)
    requests = {str(seed): (PROMPT, SamplingParams(seed=seed, **PARAMS)) for seed in range(N)}
    counts: dict[tuple[int, ...], int] = {}
    for deltas in run_all(engine, requests).values():
        key = tuple(token_ids(deltas))
        counts[key] = counts.get(key, 0) + 1
    return counts


def _chi_square(counts, exact) -> float:
    """p-value of the counts under ``exact``; cells expected < 5 times are pooled."""
    big = [c for c in exact if exact[c] * N >= 5]
    observed = [counts.get(c, 0) for c in big] + [N - sum(counts.get(c, 0) for c in big)]
    expected = [exact[c] * N for c in big] + [N * (1 - sum(exact[c] for c in big))]
    if expected[-1] < 5:  # too little to pool on its own
        observed[-2] += observed.pop()
        expected[-2] += expected.pop()
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
    return float(stats.chi2.sf(chi2, len(observed) - 1))


def _tv(counts, exact) -> float:
    return 0.5 * sum(abs(counts.get(c, 0) / N - exact.get(c, 0.0))
                     for c in set(exact) | set(counts))


@pytest.mark.parametrize("drafter", ["draft-model", "point-mass"])
def test_sampled_tokens_follow_the_target_distribution(drafter):
    model = tiny_model("llama")
    params = SamplingParams(**PARAMS)
    if drafter == "draft-model":
        spec = _draft_model(model)
    else:
        p1 = target_probs(prefill(model, naive_cache_factory(model)(), PROMPT), params)
        order = torch.argsort(p1, descending=True).tolist()
        spec = Speculator(FixedDrafts([order[0], order[3]]), 2)
    exact = _exact_joint(model, params)
    counts = _sample(model, spec)
    assert set(counts) <= set(exact), "a token outside the target's support was produced"
    # Drafts were really verified, with both outcomes.
    assert spec.verified_rows >= N and 0 < spec.accepted_tokens < spec.draft_tokens
    pvalue = _chi_square(counts, exact)
    # Chi-square decides: with 125 cells and 3000 samples, sampling noise alone puts the TV
    # distance near 0.08 (shown for diagnosis only).
    assert pvalue > 1e-3, (pvalue, _tv(counts, exact))


LOGITS = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0], [0.0, 1.5, -0.5, 1.0, 0.2, 0.0]])
Q = torch.softmax(torch.tensor([0.0, 2.0, 0.0, 1.0, -2.0, 0.5]), dim=0)  # differs from p


def _first_tokens(rule, q, draws: int = 20000) -> list[int]:
    """First emitted token of ``draws`` verifications of a 1-token draft drawn from ``q``
    (or a fixed token when ``q`` is None)."""
    from forge_kernel.engine.sampler import SamplingRow

    gen = torch.Generator().manual_seed(1234)
    row = SamplingRow(SamplingParams(temperature=1.0), [1], [3], gen)
    out = []
    for _ in range(draws):
        if q is None:
            draft, dist = [1], None
        else:
            draft = [int(torch.multinomial(q, 1, generator=gen))]
            dist = q.unsqueeze(0)
        tokens, _ = rule(LOGITS, draft, dist, row)
        out.append(tokens[0])
    return out


def _pvalue(tokens: list[int]) -> float:
    p = torch.softmax(LOGITS[0], dim=0).double().numpy()
    observed = [tokens.count(t) for t in range(len(p))]
    return float(stats.chisquare(observed, p * len(tokens)).pvalue)


@pytest.mark.parametrize("q", [Q, None], ids=["draft-distribution", "point-mass"])
def test_rule_emits_the_target_distribution(q):
    """20000 verifications of one position: the emitted token follows p exactly."""
    assert _pvalue(_first_tokens(verify.verify_row, q)) > 1e-3


def test_the_check_has_power():
    """The same check rejects the classic mistakes: resampling from p instead of the residual
    norm(max(0, p - q)), and evaluating the rule with another q than the drafts came from
    (as when a draft temperature is forgotten). (Treating any draft as a point mass is *not*
    one: it is exact and only accepts less often; n-gram drafts are verified that way.)"""
    real = verify.verify_row

    def resample_from_p(logits, draft, q, row):
        tokens, accepted = real(logits, draft, q, row)
        if accepted == 0:  # rejected: a fresh draw from p instead of the residual
            tokens = [int(torch.multinomial(torch.softmax(logits[0], 0), 1,
                                            generator=row.generator))]
        return tokens, accepted

    def wrong_q(logits, draft, q, row):
        return real(logits, draft, torch.full_like(q, 1.0 / q.shape[-1]), row)

    assert _pvalue(_first_tokens(resample_from_p, Q)) < 1e-6
    assert _pvalue(_first_tokens(wrong_q, Q)) < 1e-6
