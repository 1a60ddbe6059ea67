"""Sampler and stop-string logic (pure: no model, no tokenizer files)."""

from __future__ import annotations

import math

import pytest
import torch

from forge_kernel.engine.request import validate
from forge_kernel.engine.sampler import SamplingRow, process_logits, sample
from forge_kernel.engine.stop import StopChecker, held_suffix_length
from forge_kernel.engine.types import InvalidRequest, SamplingParams
from forge_kernel.interfaces.tokenizer import IncrementalDetokenizer

V = 12


def row(logits_params: SamplingParams, prompt=(), output=(), seed=None, eos=frozenset()):
    gen = None
    if seed is not None:
        gen = torch.Generator()
        gen.manual_seed(seed)
    return SamplingRow(logits_params, list(prompt), list(output), gen, frozenset(eos))


def test_greedy_is_argmax_per_row():
    logits = torch.randn(5, V, generator=torch.Generator().manual_seed(1))
    rows = [row(SamplingParams(temperature=0.0)) for _ in range(5)]
    got = [t for t, _ in sample(logits, rows)]
    assert got == logits.argmax(-1).tolist()


def test_logit_bias_and_min_tokens_mask_eos():
    logits = torch.zeros(1, V)
    logits[0, 3] = 5.0  # EOS would win
    p = SamplingParams(temperature=0.0, min_tokens=2, logit_bias={7: 1.0})
    assert sample(logits, [row(p, output=[1], eos={3})])[0][0] == 7
    # once min_tokens is reached EOS is allowed again
    assert sample(logits, [row(p, output=[1, 2], eos={3})])[0][0] == 3
    # stop_token_ids are masked too
    p2 = SamplingParams(temperature=0.0, min_tokens=1, stop_token_ids=[3])
    assert sample(logits, [row(p2)])[0][0] != 3


def test_repetition_penalty_hf_semantics():
    x = torch.tensor([2.0, -2.0, 1.0, 0.5] + [0.0] * (V - 4))
    p = SamplingParams(repetition_penalty=2.0)
    out = process_logits(x, row(p, prompt=[0], output=[1]))
    assert out[0] == 1.0 and out[1] == -4.0 and out[2] == 1.0


def test_presence_frequency_penalties_over_output_only():
    x = torch.zeros(V)
    p = SamplingParams(presence_penalty=0.5, frequency_penalty=0.25)
    out = process_logits(x, row(p, prompt=[4, 4], output=[2, 2, 2, 5]))
    assert out[2] == pytest.approx(-(0.5 + 0.75))
    assert out[5] == pytest.approx(-(0.5 + 0.25))
    assert out[4] == 0.0  # prompt tokens are not penalized by OpenAI penalties


def test_top_k_top_p_min_p_restrict_support():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05] + [1e-9] * (V - 4)]))
    for params, allowed in [
        (SamplingParams(top_k=2), {0, 1}),
        (SamplingParams(top_p=0.7), {0, 1}),
        (SamplingParams(top_p=0.01), {0}),
        (SamplingParams(min_p=0.5), {0, 1}),
    ]:
        r = row(params, seed=0)
        seen = {sample(logits, [r])[0][0] for _ in range(200)}
        assert seen <= allowed and len(seen) >= 1, (params, seen)
    r = row(SamplingParams(top_k=2), seed=0)
    assert {sample(logits, [r])[0][0] for _ in range(200)} == {0, 1}


def test_seeded_rows_independent_of_batch():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(4, V, generator=g)
    p = SamplingParams(temperature=1.0, seed=42)
    alone = [sample(logits[1:2], [row(p, seed=42)])[0][0] for _ in range(1)]
    rows = [row(SamplingParams(temperature=1.0), seed=i) for i in range(4)]
    rows[1] = row(p, seed=42)
    batched = sample(logits, rows)[1][0]
    assert alone[0] == batched


def test_logprobs_are_raw_log_softmax():
    logits = torch.randn(2, V, generator=torch.Generator().manual_seed(5))
    p = SamplingParams(temperature=0.0, logprobs=3, repetition_penalty=1.5)
    (tok, lp), (tok2, lp2) = sample(logits, [row(p, prompt=[0]), row(SamplingParams())])
    ref = torch.log_softmax(logits[0], -1)
    assert lp.token_id == tok and lp.logprob == pytest.approx(float(ref[tok]))
    assert [t for t, _ in lp.top] == torch.topk(ref, 3).indices.tolist()
    assert lp2 is None


class PieceDetok(IncrementalDetokenizer):
    """Each token id maps to a fixed string piece."""

    def __init__(self, pieces):
        self.pieces = pieces

    def add(self, token_id):
        return self.pieces[token_id]

    def flush(self):
        return ""


PIECES = ["Hel", "lo", " wor", "ld", "!", "<eos>", " ST", "OP", " end", "S"]


def run_checker(tokens, **kw):
    kw.setdefault("max_tokens", 100)
    checker = StopChecker(PieceDetok(PIECES), eos_ids=frozenset({5}), **kw)
    chunks, reason = [], None
    for t in tokens:
        out = checker.add(t)
        chunks.append(out.text)
        if out.finish_reason:
            reason = out.finish_reason
            break
    return chunks, reason


def test_stop_string_spanning_tokens_is_never_streamed():
    chunks, reason = run_checker([0, 1, 6, 7, 8], stop=["STOP"])
    assert reason == "stop"
    assert "".join(chunks) == "Hello "
    # " S" of " ST" was held while "ST" could start "STOP"; nothing with "S" was streamed
    assert all("S" not in c for c in chunks)


def test_held_text_released_when_not_a_stop():
    chunks, reason = run_checker([0, 6, 8, 4], stop=["STOP"], max_tokens=4)
    assert reason == "length"
    assert chunks[1] == " " and chunks[2] == "ST end"
    assert "".join(chunks) == "Hel ST end!"


def test_eos_stop_token_and_length():
    assert run_checker([0, 1, 5, 2]) == (["Hel", "lo", ""], "stop")
    assert run_checker([0, 4, 2], stop_token_ids=[4]) == (["Hel", ""], "stop")
    assert run_checker([0, 1, 5, 2], ignore_eos=True, max_tokens=4)[1] == "length"
    assert run_checker([0, 1, 2], max_tokens=2) == (["Hel", "lo"], "length")


def test_stop_inside_one_token_and_first_of_several():
    chunks, reason = run_checker([0, 1, 2, 3], stop=["lo w", "ld"])
    assert "".join(chunks) == "Hel" and reason == "stop"


def test_held_suffix_length():
    assert held_suffix_length("abc S", ["STOP"]) == 1
    assert held_suffix_length("abc ST", ["STOP", "T!"]) == 2
    assert held_suffix_length("abc", ["STOP"]) == 0


@pytest.mark.parametrize("field,value", [
    ("temperature", -0.1), ("temperature", math.nan), ("top_p", 0.0), ("top_p", 1.5),
    ("top_k", -2), ("min_p", 2.0), ("repetition_penalty", 0.0), ("presence_penalty", 3.0),
    ("frequency_penalty", -2.5), ("max_tokens", 0), ("logprobs", 21), ("n", 0),
    ("min_tokens", -1), ("stop", [""]), ("stop_token_ids", [99]), ("logit_bias", {99: 1.0}),
    ("logit_bias", {1: 200.0}), ("seed", 1.5), ("seed", 2**64),
])
def test_validation_names_the_param(field, value):
    p = SamplingParams()
    setattr(p, field, value)
    with pytest.raises(InvalidRequest) as info:
        validate([1, 2], p, vocab_size=V, max_model_len=50)
    assert info.value.param == field


def test_context_length_message():
    with pytest.raises(InvalidRequest) as info:
        validate([1] * 40, SamplingParams(max_tokens=20), vocab_size=V, max_model_len=50,
                 prompt_param="messages")
    err = info.value
    assert err.code == "context_length_exceeded" and err.param == "messages"
    assert str(err) == ("This model's maximum context length is 50 tokens. However, you "
                        "requested 60 tokens (40 in the messages, 20 in the completion). Please "
                        "reduce the length of the messages or completion.")
    with pytest.raises(InvalidRequest):
        validate([1] * 50, SamplingParams(), vocab_size=V, max_model_len=50)
    with pytest.raises(InvalidRequest) as info:
        validate([1, 99], SamplingParams(), vocab_size=V, max_model_len=50)
    assert info.value.param == "prompt"
    validate([1] * 40, SamplingParams(max_tokens=10), vocab_size=V, max_model_len=50)


def test_top_p_on_a_large_vocab_fast_and_fallback_paths_agree_with_sorting():
    from forge_kernel.engine import sampler

    g = torch.Generator().manual_seed(0)
    for scale in (8.0, 0.01):  # peaked: nucleus in the top candidates; flat: full-sort fallback
        x = torch.randn(5000, generator=g) * scale
        probs = torch.softmax(x, -1)
        sorted_p, order = torch.sort(probs, descending=True)
        nucleus = set(order[(torch.cumsum(sorted_p, -1) - sorted_p) < 0.9].tolist())
        p = SamplingParams(top_p=0.9)
        draws = {sampler.sample_row(x, p, torch.Generator().manual_seed(i)) for i in range(50)}
        assert draws <= nucleus
