"""Greedy decoding with speculation gives exactly the tokens of decoding without it, on tiny
random models of several families, both KV caches, alone and batched, with n-gram and
draft-model drafts, and with stop strings / EOS / max_tokens landing inside an accepted run."""

from __future__ import annotations

import random

import pytest
from forge_plugin_speculative.draft_model import DraftModelProposer
from forge_plugin_speculative.ngram import NgramProposer
from forge_plugin_speculative.speculator import Speculator
from spec_helpers import VOCAB, make_cache, make_engine, run_all, tiny_model, token_ids

from forge_kernel.engine.types import SamplingParams

rng = random.Random(7)
# Repetitive prompts (a phrase quoted again) so that n-gram drafts get accepted, and random
# ones where they mostly are not.
PROMPTS = []
for i in range(8):
    phrase = [rng.randrange(3, VOCAB) for _ in range(rng.randrange(3, 9))]
    noise = [rng.randrange(3, VOCAB) for _ in range(rng.randrange(0, 12))]
    PROMPTS.append([1] + phrase + noise + phrase * (1 + i % 3) if i % 2 == 0 else [1] + noise
                   + phrase)
GREEDY = SamplingParams(temperature=0.0, max_tokens=24, ignore_eos=True)


def _reference(model, prompts, params, kv="paged"):
    engine = make_engine(model, kv=kv)
    out = run_all(engine, {str(i): (p, params) for i, p in enumerate(prompts)})
    return {rid: token_ids(d) for rid, d in out.items()}


def _ngram(k=4):
    return Speculator(NgramProposer(), k)


@pytest.mark.parametrize("case", ["llama", "qwen3", "gemma3"])
@pytest.mark.parametrize("kv", ["paged", "naive"])
def test_ngram_greedy_identical(case, kv):
    model = tiny_model(case)
    ref = _reference(model, PROMPTS, GREEDY, kv)
    spec = _ngram()
    engine = make_engine(model, spec, kv=kv)
    got = run_all(engine, {str(i): (p, GREEDY) for i, p in enumerate(PROMPTS)})
    assert {rid: token_ids(d) for rid, d in got.items()} == ref
    assert spec.verified_rows > 0 and 0 < spec.accepted_tokens < spec.draft_tokens
    stats = engine.stats()
    assert stats.spec_draft_tokens == spec.draft_tokens and stats.spec_rows > 0
    assert engine.kv_cache.usage() == 0.0  # everything freed, rollbacks included


def test_ngram_greedy_identical_one_at_a_time_small_cache():
    """Alone, and in a cache so small that speculation must skip rows or preempt."""
    model = tiny_model("llama")
    for prompt in PROMPTS[:4]:
        ref = _reference(model, [prompt], GREEDY)["0"]
        got = run_all(make_engine(model, _ngram(6)), {"0": (prompt, GREEDY)})["0"]
        assert token_ids(got) == ref
    ref = _reference(model, PROMPTS, GREEDY)
    engine = make_engine(model, _ngram(6), num_blocks=14)
    got = run_all(engine, {str(i): (p, GREEDY) for i, p in enumerate(PROMPTS)})
    assert {rid: token_ids(d) for rid, d in got.items()} == ref
    assert engine.stats().num_preemptions > 0


@pytest.mark.parametrize("same", [True, False])
def test_draft_model_greedy_identical(same):
    """A draft model: the target itself (every draft accepted) or another random model of
    the same vocabulary (most rejected); tokens identical either way."""
    target = tiny_model("llama")
    draft = target if same else tiny_model("qwen2", seed=3)
    ref = _reference(target, PROMPTS, GREEDY)
    spec = Speculator(DraftModelProposer(draft, make_cache(draft, num_blocks=80)), 4)
    engine = make_engine(target, spec)
    got = run_all(engine, {str(i): (p, GREEDY) for i, p in enumerate(PROMPTS)})
    assert {rid: token_ids(d) for rid, d in got.items()} == ref
    if same:
        assert spec.accepted_tokens == spec.draft_tokens > 0
    else:
        assert spec.accepted_tokens < spec.draft_tokens
    assert engine.kv_cache.usage() == 0.0


def test_stops_inside_an_accepted_run():
    """max_tokens, a stop token id and a stop string that fall inside a run of accepted
    drafts end the choice exactly where decoding without speculation ends it."""
    model = tiny_model("llama")
    prompt = PROMPTS[0]
    full = _reference(model, [prompt], GREEDY)["0"]
    cases = [SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True) for n in (2, 5, 9)]
    cases.append(SamplingParams(temperature=0.0, max_tokens=24, stop_token_ids=[full[6]]))
    cases.append(SamplingParams(temperature=0.0, max_tokens=24, ignore_eos=True,
                                stop=[f"<{full[7]}><{full[8]}>"]))
    cases.append(SamplingParams(temperature=0.0, max_tokens=24, logprobs=2, ignore_eos=True))
    for params in cases:
        ref = run_all(make_engine(model), {"0": (prompt, params)})["0"]
        got = run_all(make_engine(model, Speculator(DraftModelProposer(
            model, make_cache(model)), 5)), {"0": (prompt, params)})["0"]
        assert token_ids(got) == token_ids(ref), params
        assert "".join(d.text for d in got) == "".join(d.text for d in ref)
        assert got[-1].finish_reason == ref[-1].finish_reason
        assert got[-1].usage.completion_tokens == ref[-1].usage.completion_tokens
        if params.logprobs:
            lp_got = [lp for d in got for lp in d.logprobs]
            lp_ref = [lp for d in ref for lp in d.logprobs]
            assert [x.token_id for x in lp_got] == [x.token_id for x in lp_ref]
            for a, b in zip(lp_got, lp_ref, strict=True):
                assert abs(a.logprob - b.logprob) < 1e-4
                assert [t for t, _ in a.top] == [t for t, _ in b.top]


def test_penalties_and_bias_greedy_identical():
    """Rows with penalties, logit_bias and min_tokens speculate too (each position is
    processed with the drafts before it counted as output)."""
    model = tiny_model("llama")
    params = [SamplingParams(temperature=0.0, max_tokens=20, repetition_penalty=1.3),
              SamplingParams(temperature=0.0, max_tokens=20, frequency_penalty=0.7,
                             presence_penalty=0.4),
              SamplingParams(temperature=0.0, max_tokens=20, min_tokens=12,
                             logit_bias={EOS_ID: 50.0 for EOS_ID in (2,)}),
              SamplingParams(temperature=0.0, max_tokens=20, logit_bias={17: 3.0, 42: -5.0})]
    for p in params:
        requests = {str(i): (prompt, p) for i, prompt in enumerate(PROMPTS[:4])}
        ref = run_all(make_engine(model), requests)
        spec = Speculator(DraftModelProposer(model, make_cache(model)), 4)
        got = run_all(make_engine(model, spec), requests)
        assert {r: token_ids(d) for r, d in got.items()} == {r: token_ids(d)
                                                            for r, d in ref.items()}, p
        assert spec.verified_rows > 0
