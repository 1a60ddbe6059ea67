"""The cuda backend's device-agnostic path end to end on device ``cpu``: a tiny random Gemma 3
(sliding window, GQA, tied embeddings) built on the device backend with the ``device-paged``
cache gives the CPU backend's greedy tokens (float32: exactly; Triton kernels through the
interpreter; bf16: close logits)."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from forge_plugin_cuda.device_backend import TorchDeviceBackend  # noqa: E402
from forge_plugin_cuda.kv_cache import DevicePagedKVCache  # noqa: E402
from forge_plugin_cuda.parity import greedy_generate  # noqa: E402

from forge_kernel.interfaces.kv_cache import KVCacheConfig  # noqa: E402
from forge_kernel.modeling import build_causal_lm  # noqa: E402

testing = pytest.importorskip("forge_plugin_models.testing")
cpu_backend = pytest.importorskip("forge_plugin_cpu.backend")
kv_paged = pytest.importorskip("forge_plugin_kv_paged.cache")

PROMPTS = testing.PROMPTS[:3]


@pytest.fixture(scope="module")
def source():
    return testing.hf_source(testing.make_hf("gemma3", seed=1))


@pytest.fixture(scope="module")
def reference(source):
    model = build_causal_lm(source, cpu_backend.CpuBackend(threads=1, precision="exact"))
    cache = kv_paged.PagedKVCache(model.kv_cache_spec(), KVCacheConfig(block_size=4,
                                                                       num_blocks=64))
    return greedy_generate(model, cache, PROMPTS, 8)


@pytest.mark.parametrize("attention", ["torch", "triton"])
def test_float32_tokens_equal_cpu_backend(source, reference, attention):
    if attention == "triton":
        pytest.importorskip("triton")
    model = build_causal_lm(source, TorchDeviceBackend("cpu", "float32"))
    cache = DevicePagedKVCache(model.kv_cache_spec(), KVCacheConfig(block_size=3,
                                                                    num_blocks=64),
                               attention=attention)
    assert greedy_generate(model, cache, PROMPTS, 8) == reference


def test_bfloat16_logits_close_to_float32(source):
    logits = []
    for dtype in ("float32", "bfloat16"):
        model = build_causal_lm(source, TorchDeviceBackend("cpu", dtype))
        cache = DevicePagedKVCache(model.kv_cache_spec(), KVCacheConfig(block_size=4,
                                                                        num_blocks=32))
        assert cache.k.dtype == getattr(torch, dtype)
        greedy_generate(model, cache, PROMPTS[:1], 1,
                        pick=lambda x: (logits.append(x.float()), x.argmax(-1).tolist())[1])
    err = (logits[1] - logits[0]).abs().max() / logits[0].abs().max()
    assert err < 0.05, f"bf16 logits differ by {err:.3f} of the largest"
