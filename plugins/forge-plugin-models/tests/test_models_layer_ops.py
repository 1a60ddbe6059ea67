"""A backend's fused layer ops (``Backend.layer_ops``, here the cpu backend's compiled kernels
on int8 weights) against the models plugin's own torch code (``TORCH_OPS``) on the same weights:
logits agree to float32 rounding and greedy tokens are the same, for every family (plain
Llama, biases, q/k norms, Gemma's sandwich norms and GELU-tanh, sliding windows)."""

from __future__ import annotations

import pytest
import torch
from forge_plugin_models.layers import TORCH_OPS
from forge_plugin_models.testing import CASES, PROMPTS, hf_source, make_hf

from forge_kernel.modeling import build_causal_lm
from forge_kernel.plugins import get_host
from forge_kernel.testing.conformance.model_architecture import greedy, naive_cache_factory, step


def int8_backend(layer_ops: bool):
    backend = get_host().registry.create("backend", "cpu", threads=2, precision="int8")
    if not layer_ops:
        backend.layer_ops = None
    return backend


@pytest.fixture
def backends():  # fresh per test: each build converts its own weights
    fused = int8_backend(True)
    if fused.layer_ops is None:
        pytest.skip("the cpu backend has no compiled layer ops here")
    return fused, int8_backend(False)


@pytest.mark.parametrize("case", list(CASES))
def test_fused_layer_ops_match_the_torch_code(case, backends):
    hf = make_hf(case, seed=2)
    fused, plain = (build_causal_lm(hf_source(hf), b) for b in backends)
    assert fused.ops is backends[0].layer_ops and plain.ops is TORCH_OPS
    pieces = [(i, 0, ids, True) for i, ids in enumerate(PROMPTS)]
    a = step(fused, naive_cache_factory(fused)(), pieces)
    b = step(plain, naive_cache_factory(plain)(), pieces)
    # measured max |diff| ~1e-6 (sums of squares added in another order, GELU through exp)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    for ids in PROMPTS[:2]:
        assert (greedy(fused, naive_cache_factory(fused)(), ids, 8)
                == greedy(plain, naive_cache_factory(plain)(), ids, 8))


def test_exact_precision_keeps_the_torch_code():
    exact = get_host().registry.create("backend", "cpu", threads=1, precision="exact")
    assert build_causal_lm(hf_source(make_hf("gemma3")), exact).ops is TORCH_OPS
