"""The default model (Gemma 3 270M Q4_K_M GGUF) through :func:`build_engine`: greedy tokens
equal transformers' (which dequantizes the GGUF to float32), with the cpu backend's ``exact``
float32 weights so both sides compute the same function."""

from __future__ import annotations

import pytest
import torch
from engine_helpers import cpu_weights, require

from forge_kernel.engine.builder import build_engine, resolve_model_path
from forge_kernel.engine.config import EngineConfig
from forge_kernel.engine.types import SamplingParams
from forge_kernel.plugins import get_host

require(("scheduler", "continuous", "forge-plugin-scheduler"),
        ("weight_loader", "gguf", "forge-plugin-gguf"))
KV = "paged" if "paged" in get_host().registry.names("kv_cache") else "naive"


@pytest.fixture(scope="module")
def exact_engine():
    with cpu_weights("exact"):
        return build_engine(EngineConfig(kv_cache=KV, threads=2, max_model_len=256))


def test_gemma_greedy_matches_transformers(exact_engine):
    import transformers

    path = resolve_model_path(None)
    prompts = [exact_engine.tokenizer.encode("The capital of France is")]
    ours = [[t for d in exact_engine.generate(ids, SamplingParams(temperature=0.0, max_tokens=4,
                                                                  ignore_eos=True))
             for t in d.token_ids] for ids in prompts]
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    for ids, got in zip(prompts, ours, strict=True):
        ref = hf.generate(torch.tensor([ids]), max_new_tokens=4, min_new_tokens=4,
                          do_sample=False)[0, len(ids):].tolist()
        assert got == ref
    assert exact_engine.kv_cache.usage() == 0.0
