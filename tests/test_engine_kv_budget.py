"""The default KV memory budget scales with the model (``default_kv_budget``)."""

from __future__ import annotations

from forge_kernel.engine.builder import DEFAULT_KV_TOKENS, default_kv_budget
from forge_kernel.interfaces.kv_cache import KVCacheConfig

CAP = KVCacheConfig().memory_budget_bytes
GEMMA3_270M = 2 * 18 * 1 * 256 * 4  # K and V, 18 layers, 1 KV head of 256, float32


def test_small_model_gets_room_for_the_default_tokens_not_the_whole_cap():
    assert default_kv_budget(GEMMA3_270M) == DEFAULT_KV_TOKENS * GEMMA3_270M == 144 << 20
    assert default_kv_budget(GEMMA3_270M) < CAP


def test_a_longer_max_model_len_raises_it_up_to_the_cap():
    assert default_kv_budget(GEMMA3_270M, 8192) == 8192 * GEMMA3_270M
    assert default_kv_budget(GEMMA3_270M, 1 << 20) == CAP
    assert default_kv_budget(GEMMA3_270M, 16) == DEFAULT_KV_TOKENS * GEMMA3_270M


def test_large_models_keep_the_cap():
    assert default_kv_budget(256 << 10) == CAP
