"""Tiny random-weight Llama / Mistral / Qwen2 / Qwen3 / Gemma 3 models built with transformers:
our float32 logits and greedy tokens must match transformers' own (eager attention, float32).

Here the architectures get their tensors straight from the Hugging Face state dict, renamed to
the canonical GGUF names (``hf_source``), so a failure points at the architecture code, not at a
loader. ``test_models_loaders.py`` repeats the comparison through the real loader plugins.

Tolerance: both sides run the same float32 math in a slightly different order (fused vs split
rotary, SDPA vs eager softmax), so differences are rounding only: measured max |diff| is about
1e-6 on logits of magnitude ~1-10. We allow 1e-4 absolute + 1e-4 relative, 100x the rounding
noise and far below what any real mistake (a wrong norm, RoPE base, mask or scale) produces.
"""

from __future__ import annotations

import pytest
import torch
from forge_plugin_models.testing import CASES, PROMPTS, hf_source, make_hf

from forge_kernel.interfaces.loader import WeightTensor
from forge_kernel.modeling import build_causal_lm
from forge_kernel.plugins import get_host
from forge_kernel.testing.conformance.model_architecture import (
    check_causal_lm,
    greedy,
    naive_cache_factory,
    prefill,
)

TOL = {"rtol": 1e-4, "atol": 1e-4}


@pytest.fixture(scope="module")
def backend():
    return get_host().registry.create("backend", "cpu", threads=1, precision="exact")


@pytest.mark.parametrize("case", list(CASES))
def test_logits_and_greedy_match_transformers(case, backend):
    hf = make_hf(case)
    ours = build_causal_lm(hf_source(hf), backend)
    make_cache = naive_cache_factory(ours)
    for ids in PROMPTS:
        with torch.no_grad():
            ref = hf(torch.tensor([ids])).logits[0, -1]
        got = prefill(ours, make_cache(), ids)
        torch.testing.assert_close(got, ref, **TOL)
    ids = PROMPTS[1]
    with torch.no_grad():
        ref_tokens = hf.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False,
                                 min_new_tokens=12, pad_token_id=0)[0, len(ids):].tolist()
    assert greedy(ours, make_cache(), ids, 12, chunk_sizes=[5, len(ids) - 5]) == ref_tokens


@pytest.mark.parametrize("case", ["llama", "qwen2", "gemma3"])
def test_chunking_and_batching_invariants(case, backend):
    ours = build_causal_lm(hf_source(make_hf(case, seed=1)), backend)
    check_causal_lm(ours, naive_cache_factory(ours), PROMPTS, rtol=1e-5, atol=1e-5)


def test_missing_tensor_and_bad_shape_name_the_problem(backend):
    from forge_kernel.errors import ModelFormatError

    source = hf_source(make_hf("qwen3"))
    del source.tensors["blk.1.attn_k_norm.weight"]
    with pytest.raises(ModelFormatError, match="blk.1.attn_k_norm.weight' is missing.*qwen3"):
        build_causal_lm(source, backend)
    source = hf_source(make_hf("llama"))
    w = source.tensors["blk.0.ffn_up.weight"]
    source.tensors["blk.0.ffn_up.weight"] = WeightTensor(w.name, (95, 64), "F32", w.data[:95],
                                                         w.decoder)
    with pytest.raises(ModelFormatError, match=r"blk.0.ffn_up.weight.*\(95, 64\).*\(96, 64\)"):
        build_causal_lm(source, backend)


@pytest.mark.parametrize("case", ["llama", "gemma3"])
def test_embed_is_mean_of_final_hidden_states(case, backend):
    from forge_kernel.interfaces.batch import ForwardBatch, SequenceChunk

    hf = make_hf(case)
    ours = build_causal_lm(hf_source(hf), backend)
    a, b = PROMPTS[0], PROMPTS[3]
    cache = naive_cache_factory(ours)()
    cache.allocate(0, len(a))
    cache.allocate(1, len(b))
    batch = ForwardBatch(torch.tensor(a + b), torch.tensor([*range(len(a)), *range(len(b))]),
                         [SequenceChunk(0, 0, len(a)), SequenceChunk(1, 0, len(b))])
    cache.begin_step(batch)
    got = ours.embed(batch, cache)
    with torch.no_grad():
        ref = [hf(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0].mean(0)
               for ids in (a, b)]
    torch.testing.assert_close(got, torch.stack(ref), **TOL)


def test_unsupported_rope_scaling_names_the_file(backend):
    from forge_kernel.errors import ModelFormatError

    source = hf_source(make_hf("llama"))
    source.config.rope_scaling = {"rope_type": "yarn", "factor": 4.0}
    with pytest.raises(ModelFormatError, match=r"<hf llama>: RoPE settings: .*'yarn'"):
        build_causal_lm(source, backend)
