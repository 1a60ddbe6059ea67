"""Fused q/k/v and gate/up projections (``forge_plugin_models.fused``) on the cpu backend's int8
weights: same logits as one op per projection, bypassed when a projection is replaced (LoRA),
and batch invariance holds exactly (the int8 kernel is row invariant)."""

from __future__ import annotations

import pytest
import torch
from forge_plugin_models.testing import PROMPTS, hf_source, make_hf

from forge_kernel.modeling import build_causal_lm
from forge_kernel.plugins import get_host
from forge_kernel.testing.conformance.model_architecture import naive_cache_factory, prefill, step


@pytest.fixture(scope="module")
def int8():
    return get_host().registry.create("backend", "cpu", threads=2, precision="int8")


@pytest.mark.parametrize("case", ["qwen2", "gemma3"])  # qwen2: q/k/v biases
def test_fused_logits_equal_separate_projections(case, int8):
    model = build_causal_lm(hf_source(make_hf(case)), int8)
    assert all(layer.qkv is not None and layer.mlp.gate_up is not None
               for layer in model.layers)
    make_cache = naive_cache_factory(model)
    fused = [prefill(model, make_cache(), ids) for ids in PROMPTS]
    for layer in model.layers:
        layer.qkv = layer.mlp.gate_up = None
    separate = [prefill(model, make_cache(), ids) for ids in PROMPTS]
    assert all(torch.equal(a, b) for a, b in zip(fused, separate, strict=True))


def test_replaced_projection_bypasses_the_fused_op(int8):
    model = build_causal_lm(hf_source(make_hf("llama")), int8)
    make_cache = naive_cache_factory(model)
    before = prefill(model, make_cache(), PROMPTS[0])
    layer = model.layers[0]
    original = layer.k
    layer.k = lambda x: original(x) * 2.0  # what a LoRA wrapper does via projections()
    changed = prefill(model, make_cache(), PROMPTS[0])
    assert not torch.equal(before, changed)
    layer.k = original
    assert torch.equal(prefill(model, make_cache(), PROMPTS[0]), before)


def test_exact_weights_are_not_fused():
    exact = get_host().registry.create("backend", "cpu", threads=1, precision="exact")
    model = build_causal_lm(hf_source(make_hf("llama")), exact)
    assert all(layer.qkv is None and layer.mlp.gate_up is None for layer in model.layers)


@pytest.mark.parametrize("case", ["llama", "gemma3"])
def test_int8_logits_do_not_depend_on_the_batch(case, int8):
    model = build_causal_lm(hf_source(make_hf(case, seed=1)), int8)
    make_cache = naive_cache_factory(model)
    alone = [prefill(model, make_cache(), ids) for ids in PROMPTS]
    batched = step(model, make_cache(), [(i, 0, ids, True) for i, ids in enumerate(PROMPTS)])
    assert all(torch.equal(batched[i], ref) for i, ref in enumerate(alone))
