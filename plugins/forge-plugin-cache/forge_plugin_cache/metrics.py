"""Cache counters in the server's ``/metrics`` (forge-plugin-metrics' per-server registry).

Read at scrape time from :class:`~forge_plugin_cache.store.CacheStats`, so counting a request
costs one dict increment. Without forge-plugin-metrics installed there is no ``/metrics`` and
nothing is registered; the ``x-forge-cache`` header and ``usage.cached`` still report hits.
"""

from __future__ import annotations

from typing import Any

from forge_plugin_cache.store import ResponseCache


class CacheCollector:
    """A Prometheus collector over one :class:`ResponseCache`."""

    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self.cache.stats
        requests = CounterMetricFamily(
            "forge_cache_requests", "Completion requests by cache result (hit, miss, bypass).",
            labels=["result"])
        for result in ("hit", "miss", "bypass"):
            requests.add_metric([result], stats.requests[result])
        hits = CounterMetricFamily("forge_cache_hits", "Cache hits by tier and match kind.",
                                   labels=["tier", "match"])
        for (tier, match), count in sorted(stats.hits.items()):
            hits.add_metric([tier, match], count)
        stores = CounterMetricFamily("forge_cache_stores", "Answers stored in the cache.")
        stores.add_metric([], stats.stores)
        skipped = CounterMetricFamily(
            "forge_cache_store_skipped", "Missed answers not stored (error, abort, too large).")
        skipped.add_metric([], stats.skipped)
        coalesced = CounterMetricFamily(
            "forge_cache_coalesced", "Hits that waited for an identical request in flight.")
        coalesced.add_metric([], stats.coalesced)
        entries = GaugeMetricFamily("forge_cache_entries", "Entries held per tier.",
                                    labels=["tier"])
        size = GaugeMetricFamily("forge_cache_bytes", "Bytes held per tier.", labels=["tier"])
        up = GaugeMetricFamily("forge_cache_tier_up", "1 while a tier is in use (0: bypassed "
                               "after a failure, retried later).", labels=["tier"])
        for tier in self.cache.tiers:
            held = tier.usage()
            if held is not None:
                entries.add_metric([tier.name], held[0])
                size.add_metric([tier.name], held[1])
            up.add_metric([tier.name], 1 if tier.up() else 0)
        yield from (requests, hits, stores, skipped, coalesced, entries, size, up)


def register_metrics(server: Any, cache: ResponseCache) -> bool:
    """Add the cache's metrics to ``server``'s ``/metrics``; ``False`` if that plugin is absent."""
    try:
        from forge_plugin_metrics.plugin import metrics_for
    except ImportError:
        return False
    metrics_for(server).registry.register(CacheCollector(cache))
    return True
