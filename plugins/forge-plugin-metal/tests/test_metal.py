"""The metal backend: availability reasons (stand-in torch), refusal off macOS through the
registry and the CLI, and its device-agnostic path (fp16 weights, kv heads expanded for SDPA
as on MPS) on device ``cpu``."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from forge_plugin_cuda.availability import BackendUnavailable
from forge_plugin_cuda.device_backend import TorchDeviceBackend
from forge_plugin_cuda.kv_cache import DevicePagedKVCache
from forge_plugin_cuda.parity import greedy_generate
from forge_plugin_metal.availability import mps_availability

from forge_kernel.interfaces.kv_cache import KVCacheConfig
from forge_kernel.modeling import build_causal_lm
from forge_kernel.plugins import get_host

ON_MPS = torch.backends.mps.is_available()


def _fake(built, available):
    mps = SimpleNamespace(is_built=lambda: built, is_available=lambda: available)
    return SimpleNamespace(__version__="2.13.0", backends=SimpleNamespace(mps=mps))


def test_reasons():
    assert mps_availability(_fake(True, True)) == (True, "")
    ok, reason = mps_availability(_fake(False, False))
    assert not ok and "built without Metal (MPS) support" in reason
    ok, reason = mps_availability(_fake(True, False))
    assert not ok and "no MPS device is available" in reason


@pytest.mark.skipif(ON_MPS, reason="this machine has an MPS device")
def test_refused_here_with_the_reason():
    factory = get_host().registry.get("backend", "metal").factory
    ok, reason = factory.availability()
    assert not ok and reason
    with pytest.raises(BackendUnavailable, match="backend 'metal' is unavailable: "):
        factory()


@pytest.mark.skipif(ON_MPS, reason="this machine has an MPS device")
def test_cli_exits_non_zero_with_the_reason():
    done = subprocess.run([sys.executable, "-m", "forge_kernel", "run", "--backend", "metal",
                           "hello"], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "backend 'metal' is unavailable: " in done.stderr
    assert "hello" not in done.stdout  # nothing generated on another backend


def test_fp16_expanded_kv_path_on_cpu():
    testing = pytest.importorskip("forge_plugin_models.testing")
    source = testing.hf_source(testing.make_hf("gemma3", seed=2))
    tokens = []
    for dtype, expand in (("float32", False), ("float16", True)):
        model = build_causal_lm(source, TorchDeviceBackend("cpu", dtype))
        cache = DevicePagedKVCache(model.kv_cache_spec(), KVCacheConfig(block_size=4,
                                                                        num_blocks=32),
                                   attention="torch", expand_kv=expand)
        assert cache.k.dtype == getattr(torch, dtype)
        tokens.append(greedy_generate(model, cache, testing.PROMPTS[:2], 4))
    # fp16 keeps 11 mantissa bits: a tiny random model's greedy picks agree at the start
    assert [t[:2] for t in tokens[1]] == [t[:2] for t in tokens[0]]


@pytest.mark.skipif(not ON_MPS, reason="needs an Apple GPU (torch MPS)")
def test_runs_on_mps():  # pragma: no cover - macOS only
    from forge_plugin_metal.backend import MetalBackend

    testing = pytest.importorskip("forge_plugin_models.testing")
    source = testing.hf_source(testing.make_hf("gemma3", seed=2))
    model = build_causal_lm(source, MetalBackend())
    from forge_plugin_cuda.parity import place_rope_tables

    place_rope_tables(model, "mps")  # until forge-plugin-models places them on the device
    cache = DevicePagedKVCache(model.kv_cache_spec(), KVCacheConfig(block_size=4, num_blocks=32))
    assert len(greedy_generate(model, cache, testing.PROMPTS[:2], 4)[0]) == 4
