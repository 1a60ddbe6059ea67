"""The ``device-paged`` cache on device ``cpu``: the shared KV-cache contract with the torch
attention path and with the Triton kernels (interpreter), plus what is specific to it."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported

import pytest  # noqa: E402
import torch  # noqa: E402
from forge_plugin_cuda.kv_cache import DevicePagedKVCache, resolve_attention  # noqa: E402

from forge_kernel.errors import ConfigError  # noqa: E402
from forge_kernel.interfaces.batch import ForwardBatch, SequenceChunk  # noqa: E402
from forge_kernel.interfaces.kv_cache import KVCacheConfig, KVCacheSpec  # noqa: E402
from forge_kernel.plugins import get_host  # noqa: E402
from forge_kernel.testing.conformance.kv_cache import KVCacheConformance  # noqa: E402


class TestDevicePagedTorch(KVCacheConformance):
    block_size = 4

    def make_cache(self, spec, config):
        return DevicePagedKVCache(spec, config, attention="torch")


class TestDevicePagedTriton(KVCacheConformance):
    block_size = 3  # not a power of two: tiles span blocks

    def make_cache(self, spec, config):
        pytest.importorskip("triton")
        return DevicePagedKVCache(spec, config, attention="triton")


def test_registered_under_its_name():
    spec = KVCacheSpec(num_layers=1, num_kv_heads=1, head_dim=8, dtype=torch.float32)
    cache = get_host().registry.create("kv_cache", "device-paged", spec,
                                       KVCacheConfig(block_size=4, num_blocks=3))
    assert isinstance(cache, DevicePagedKVCache) and cache.attention == "torch"


def test_storage_has_a_scratch_block_outside_the_pool():
    spec = KVCacheSpec(num_layers=2, num_kv_heads=1, head_dim=8, dtype=torch.bfloat16)
    cache = DevicePagedKVCache(spec, KVCacheConfig(block_size=4, num_blocks=5))
    assert cache.capacity_tokens() == 20 and cache.scratch_block == 5
    assert tuple(cache.k.shape) == (2, 6, 4, 1, 8) and cache.k.dtype == torch.bfloat16
    cache.allocate(1, 20)  # the whole pool: the scratch block is never handed out
    assert 5 not in cache.block_table(1)


def test_one_step_metadata_is_reused_by_every_layer():
    spec = KVCacheSpec(num_layers=2, num_kv_heads=1, head_dim=8, dtype=torch.float32)
    cache = DevicePagedKVCache(spec, KVCacheConfig(block_size=2, num_blocks=8))
    cache.allocate(1, 3)
    cache.allocate(2, 1)
    batch = ForwardBatch(torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 2, 0]),
                         [SequenceChunk(1, 0, 3), SequenceChunk(2, 0, 1)])
    cache.begin_step(batch)
    step = cache._step
    q = torch.randn(4, 2, 8)
    kv = torch.randn(4, 1, 8)
    out0 = cache.attend(0, q, kv, kv, batch, scale=0.3)
    assert cache._step is step  # layer 1 reuses the plan
    cache.attend(1, q, kv, kv, batch, scale=0.3)
    assert step.decode_rows.tolist() == [3] and step.prefills == [(0, 3, 0, 3)]
    table = cache.block_table(1)
    assert step.slots.tolist()[:3] == [table[0] * 2, table[0] * 2 + 1, table[1] * 2]
    # a lone query sees only itself: the output is its value, for each query head
    torch.testing.assert_close(out0[3], kv[3].expand(2, 8))


def test_attend_without_begin_step_is_refused_as_by_the_paged_cache():
    spec = KVCacheSpec(num_layers=1, num_kv_heads=1, head_dim=8, dtype=torch.float32)
    cache = DevicePagedKVCache(spec, KVCacheConfig(block_size=2, num_blocks=4))
    cache.allocate(1, 2)
    batch = ForwardBatch(torch.zeros(2, dtype=torch.long), torch.arange(2),
                         [SequenceChunk(1, 0, 2)])
    x = torch.randn(2, 1, 8)
    with pytest.raises(RuntimeError, match="begin_step"):
        cache.attend(0, x, x, x, batch, scale=1.0)
    cache.begin_step(batch)
    cache.attend(0, x, x, x, batch, scale=1.0)
    other = ForwardBatch(batch.token_ids, batch.positions, batch.chunks)
    with pytest.raises(RuntimeError, match="begin_step"):  # a plan is for its own batch only
        cache.attend(0, x, x, x, other, scale=1.0)


def test_bfloat16_cache_close_to_float32():
    gen = torch.Generator().manual_seed(0)
    outs = []
    q = torch.randn(5, 4, 16, generator=gen)
    kv = torch.randn(5, 2, 16, generator=gen)
    for dtype in (torch.float32, torch.bfloat16):
        spec = KVCacheSpec(num_layers=1, num_kv_heads=2, head_dim=16, dtype=dtype)
        cache = DevicePagedKVCache(spec, KVCacheConfig(block_size=2, num_blocks=4))
        cache.allocate(7, 5)
        batch = ForwardBatch(torch.zeros(5, dtype=torch.long), torch.arange(5),
                             [SequenceChunk(7, 0, 5)])
        cache.begin_step(batch)
        outs.append(cache.attend(0, q.to(dtype), kv.to(dtype), kv.to(dtype), batch,
                                 scale=0.25).float())
    torch.testing.assert_close(outs[1], outs[0], rtol=3e-2, atol=3e-2)


def test_attention_choice_is_validated():
    cpu = torch.device("cpu")
    assert resolve_attention("auto", cpu) == "torch"
    with pytest.raises(ConfigError, match="must be one of"):
        resolve_attention("flash", cpu)


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ConfigError, match="TRITON_INTERPRET=1"):
        resolve_attention("triton", torch.device("cpu"))
