"""Hook implementations: registers the ``naive`` KV cache (torch imported only on creation)."""

from __future__ import annotations

from typing import Any

from forge_kernel import hookimpl


def _create_naive(spec: Any, config: Any = None) -> Any:
    """Factory for ``registry.create("kv_cache", "naive", spec, config)``."""
    from forge_plugin_kv_naive.cache import NaiveKVCache

    return NaiveKVCache(spec, config)


@hookimpl
def forge_register_kv_caches(register) -> None:
    """Offer the ``naive`` KV cache."""
    register("naive", _create_naive)
