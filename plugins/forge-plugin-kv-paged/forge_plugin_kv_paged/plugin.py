"""Hook implementations: registers the ``paged`` KV cache (torch/numba imported lazily)."""

from __future__ import annotations

from forge_kernel import hookimpl


def _create(spec, config=None):
    from forge_plugin_kv_paged.cache import PagedKVCache

    return PagedKVCache(spec, config)


@hookimpl
def forge_register_kv_caches(register) -> None:
    register("paged", _create)
