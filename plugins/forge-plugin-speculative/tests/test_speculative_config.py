"""Building the speculator: methods, limits and refusals (all with clear errors), the n-gram
drafter itself, and KV rollback seen from the engine (no sequence keeps KV it was not
verified to need)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from forge_plugin_speculative.draft_model import check_vocab
from forge_plugin_speculative.ngram import NgramProposer
from forge_plugin_speculative.plugin import build_speculator
from forge_plugin_speculative.speculator import Speculator
from spec_helpers import PieceTokenizer, make_cache, make_engine, tiny_model

from forge_kernel.engine.types import SamplingParams
from forge_kernel.errors import ConfigError


def _config(method, k=5):
    return SimpleNamespace(speculative=method, num_speculative_tokens=k, block_size=8,
                           kv_cache="paged")


def test_ngram_speculator_is_built():
    model = tiny_model("llama")
    spec = build_speculator(_config("ngram", 3), model=model, tokenizer=PieceTokenizer(),
                            backend=None, kv_cache=make_cache(model))
    assert isinstance(spec, Speculator) and spec.method == "ngram" and spec.max_k == 3


@pytest.mark.parametrize("method,k,message", [
    ("bogus", 5, "unknown speculative method 'bogus'"),
    ("draft:", 5, "unknown speculative method"),
    ("ngram", 0, "num_speculative_tokens must be an integer in [1, 64]"),
    ("ngram", 65, "num_speculative_tokens must be an integer in [1, 64]"),
])
def test_bad_settings_are_refused(method, k, message):
    model = tiny_model("llama")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_speculator(_config(method, k), model=model, tokenizer=PieceTokenizer(),
                         backend=None, kv_cache=make_cache(model))


def test_a_cache_without_truncate_is_refused():
    model = tiny_model("llama")
    cache = make_cache(model)
    cache.supports_truncate = False
    with pytest.raises(ConfigError, match="can roll back rejected tokens"):
        build_speculator(_config("ngram"), model=model, tokenizer=PieceTokenizer(),
                         backend=None, kv_cache=cache)


def test_draft_model_with_another_tokenizer_is_refused():
    class Other(PieceTokenizer):
        def id_to_piece(self, token_id):
            return "x" if token_id == 7 else super().id_to_piece(token_id)

    check_vocab(PieceTokenizer(), PieceTokenizer(), 300, 300, "same")
    with pytest.raises(ConfigError, match="token 7 is 'x'"):
        check_vocab(PieceTokenizer(), Other(), 300, 300, "other")
    with pytest.raises(ConfigError, match="same tokenizer"):
        check_vocab(PieceTokenizer(), PieceTokenizer(), 300, 512, "wide")


def test_ngram_drafts():
    ng = NgramProposer()
    assert ng.draft([1, 2, 3, 4, 9, 2, 3], 3) == [4, 9, 2]  # "2 3" seen before: what followed
    assert ng.draft([5, 6, 7, 5, 6, 7, 5, 6], 2) == [7, 5]  # the latest match wins
    assert ng.draft([1, 2, 3], 4) == []  # nothing repeats
    assert ng.draft([8], 4) == []
    with pytest.raises(ValueError):
        NgramProposer(min_n=3, max_n=2)


def test_rejected_drafts_kv_is_rolled_back():
    """After every step each running sequence holds KV for at most its tokens (the scheduler
    allocates exactly that for a decode); drafts beyond it were truncated."""
    model = tiny_model("llama")
    spec = Speculator(NgramProposer(), 6)
    engine = make_engine(model, spec, kv="naive")
    prompt = [1, 5, 6, 7, 8, 9, 10, 5, 6, 7, 8, 9, 10, 5, 6]
    engine.add_request("a", prompt, SamplingParams(temperature=0.0, max_tokens=40,
                                                   ignore_eos=True))
    seen_rejection = False
    while engine.has_unfinished():
        before = spec.draft_tokens - spec.accepted_tokens
        engine.step()
        seen_rejection |= spec.draft_tokens - spec.accepted_tokens > before
        found = engine.row(next(iter(engine.kv_cache._seqs), -1))
        if found is not None:
            seq = found[1].seq
            assert engine.kv_cache._seqs[seq.seq_id].reserved <= seq.num_tokens
            assert seq.num_computed_tokens == seq.num_tokens - 1
    assert seen_rejection and spec.accepted_tokens > 0
