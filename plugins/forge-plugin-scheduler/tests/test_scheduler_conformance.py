"""The continuous scheduler passes the shared scheduler contract over both KV caches."""

from __future__ import annotations

from forge_kernel.plugins import get_host
from forge_kernel.testing.conformance.scheduler import SchedulerConformance


class TestContinuousOverPaged(SchedulerConformance):
    kv_cache_name = "paged"

    def make_scheduler(self, config, kv_cache):
        return get_host().registry.create("scheduler", "continuous", config, kv_cache)


class TestContinuousOverNaive(TestContinuousOverPaged):
    kv_cache_name = "naive"
