"""Memory of rebuilding a large GGUF vocabulary (Gemma 3's has 262144 tokens, no merges).

Regression guard: building the tokenizer once materialized a 7-tuple sort key plus two sliced
strings per candidate merge (~320 bytes per merge, ~200 MB of Python objects for Gemma 3) and a
dict of the whole vocabulary; the peak pushed ``forge serve``'s start-up RSS up by ~130 MB. The
bound below is on Python allocations (tracemalloc), so it is deterministic.
"""

from __future__ import annotations

import itertools
import random
import tracemalloc
from pathlib import Path

import gguf
import pytest
from forge_plugin_tokenizers import from_gguf
from forge_plugin_tokenizers.gguf_vocab import _merges_from_vocab

ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"  # 40 letters


def _reference_merges(vocab: dict[str, int], rank: dict[str, float]) -> list[tuple[str, str]]:
    """The original (memory-hungry) definition: every split into two vocabulary tokens, sorted
    by (-rank, len(left), len(right), left id, right id)."""
    found = []
    for token, token_rank in rank.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in vocab and right in vocab:
                found.append((-token_rank, len(left), len(right), vocab[left], vocab[right],
                              left, right))
    found.sort()
    return [(left, right) for *_, left, right in found]


def _vocab() -> list[str]:
    """Specials, bytes, then every 1-, 2- and 3-letter word (~66k tokens, ~130k merges)."""
    words = ["".join(p) for n in (1, 2, 3) for p in itertools.product(ALPHABET, repeat=n)]
    return ["<pad>", "<eos>", "<bos>", "<unk>", *[f"<0x{b:02X}>" for b in range(256)], *words]


def _write(path: Path, tokens: list[str]) -> Path:
    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types([3, 3, 3, 2] + [6] * 256 + [1] * (len(tokens) - 260))
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_merges_match_the_reference_order():
    tokens = _vocab()[:6000] + ["ab", "abc"]  # repeated tokens: the last id wins
    vocab = {t: i for i, t in enumerate(tokens)}
    assert _merges_from_vocab(vocab) == _reference_merges(vocab, {t: -i for i, t in
                                                                  enumerate(tokens)})
    rnd = random.Random(0)
    for _ in range(3):  # scores with many ties interleave the candidates of equal tokens
        scores = {t: float(rnd.randint(0, 20)) for t in tokens}
        assert _merges_from_vocab(vocab, scores) == _reference_merges(vocab, scores)


@pytest.fixture(scope="module")
def large_gguf(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("vocab") / "vocab.gguf", _vocab())


def test_large_vocabulary_builds_within_a_python_memory_bound(large_gguf):
    from forge_plugin_gguf.reader import read_gguf

    fields = read_gguf(large_gguf).metadata
    tokens = fields["tokenizer.ggml.tokens"]
    merges = len(_merges_from_vocab({t: i for i, t in enumerate(tokens)}))
    assert len(tokens) > 65_000 and merges > 125_000
    tracemalloc.start()
    try:
        tok = from_gguf(large_gguf, fields)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Now ~125 bytes per merge (the (left, right) list shares the vocabulary's strings, plus
    # the vocabulary dict); the old sort keys took ~340. 200 leaves room for interpreter
    # differences while failing on any per-candidate copy.
    assert peak < 200 * merges, f"{peak / 2**20:.1f} MiB of Python objects for {merges} merges"
    assert tok.vocab_size == len(tokens)
    assert tok.encode("abcab", add_special_tokens=False) == [tok.token_to_id("abc"),
                                                             tok.token_to_id("ab")]
