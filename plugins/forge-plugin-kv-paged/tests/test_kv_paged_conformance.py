"""The paged cache passes the shared KV-cache contract (at two block sizes, prefix caching on
and off), created through its real entry point."""

from __future__ import annotations

from forge_kernel.plugins import get_host
from forge_kernel.testing.conformance.kv_cache import KVCacheConformance


class TestPagedConformance(KVCacheConformance):
    block_size = 4

    def make_cache(self, spec, config):
        return get_host().registry.create("kv_cache", "paged", spec, config)


class TestPagedConformanceBlock1NoPrefix(KVCacheConformance):
    block_size = 1

    def make_cache(self, spec, config):
        config.enable_prefix_caching = False
        return get_host().registry.create("kv_cache", "paged", spec, config)
