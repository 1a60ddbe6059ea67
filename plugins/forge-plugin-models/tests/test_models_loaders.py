"""Tiny random models through the real loader plugins: saved with ``save_pretrained``
(safetensors + a tiny BPE tokenizer.json) or written as GGUF the way llama.cpp does (q/k
permuted, Llama 3.1 scaling as ``rope_freqs.weight``), then ``open_model_source`` ->
``build_causal_lm`` -> logits compared with transformers.

Oracles: the original float32 transformers model for lossless files (safetensors, F32 GGUF);
for Q8_0 GGUF, transformers loading the same GGUF (both dequantize the same blocks). transformers'
own GGUF reader ignores RoPE scaling and Qwen3's head_dim, which is why lossless GGUF files are
compared with the original model instead. Tolerance as in ``test_models_tiny.py`` (measured
rounding ~1e-6, allowed 1e-4).
"""

from __future__ import annotations

import pytest
import torch
import transformers
from forge_plugin_models.testing import CASES, PROMPTS, make_hf, save_safetensors, write_gguf

from forge_kernel.modeling import build_causal_lm, open_model_source
from forge_kernel.plugins import get_host
from forge_kernel.testing.conformance.model_architecture import naive_cache_factory, prefill

TOL = {"rtol": 1e-4, "atol": 1e-4}


def _require_loader(name: str) -> None:
    if name not in get_host().registry.names("weight_loader"):
        pytest.skip(f"forge-plugin-{name} is not installed")


@pytest.fixture(scope="module")
def backend():
    return get_host().registry.create("backend", "cpu", threads=1, precision="exact")


def _assert_matches(path, reference, backend, architecture):
    source = open_model_source(path)
    try:
        assert source.config.architecture == architecture
        model = build_causal_lm(source, backend)
        make_cache = naive_cache_factory(model)
        for ids in PROMPTS:
            with torch.no_grad():
                ref = reference(torch.tensor([ids])).logits[0, -1]
            torch.testing.assert_close(prefill(model, make_cache(), ids), ref, **TOL)
    finally:
        source.close()


@pytest.mark.parametrize("case", list(CASES))
def test_safetensors_directory_matches_transformers(case, backend, tmp_path):
    _require_loader("safetensors")
    hf = make_hf(case)
    directory = save_safetensors(hf, tmp_path / case)
    _assert_matches(directory, hf, backend, hf.config.model_type)


@pytest.mark.parametrize("case", ["llama", "llama3-rope", "llama-linear-rope", "qwen2", "qwen3",
                                  "gemma3-6"])
def test_f32_gguf_matches_transformers(case, backend, tmp_path):
    _require_loader("gguf")
    hf = make_hf(case)
    path = write_gguf(hf, tmp_path / f"{case}.gguf")
    arch = {"mistral": "llama", "gemma3_text": "gemma3"}.get(hf.config.model_type,
                                                             hf.config.model_type)
    _assert_matches(path, hf, backend, arch)


@pytest.mark.parametrize("case", ["llama", "qwen2"])
def test_q8_0_gguf_matches_transformers_reading_the_same_file(case, backend, tmp_path):
    _require_loader("gguf")
    path = write_gguf(make_hf(case), tmp_path / f"{case}-q8_0.gguf", qtype="Q8_0")
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path, gguf_file=path.name, dtype=torch.float32, attn_implementation="eager").eval()
    _assert_matches(path, reference, backend, case)
