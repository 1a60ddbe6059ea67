"""Conformance suites: pytest classes a plugin's tests subclass to prove an implementation
honours its interface (``class TestMyTool(ToolConformance): ...``).

Each suite documents the fixtures a subclass provides (usually the object under test). The
table below maps every interface of :mod:`forge_kernel.interfaces` to its suite;
``tests/test_kernel_conformance.py`` checks that it stays complete.
"""

from __future__ import annotations

SUITES: dict[str, str] = {
    "forge_kernel.interfaces.backend:Backend":
        "forge_kernel.testing.conformance.backend:BackendConformance",
    "forge_kernel.interfaces.kv_cache:KVCache":
        "forge_kernel.testing.conformance.kv_cache:KVCacheConformance",
    "forge_kernel.interfaces.scheduler:Scheduler":
        "forge_kernel.testing.conformance.scheduler:SchedulerConformance",
    "forge_kernel.interfaces.loader:WeightLoader":
        "forge_kernel.testing.conformance.weight_loader:WeightLoaderConformance",
    "forge_kernel.interfaces.architecture:ModelArchitecture":
        "forge_kernel.testing.conformance.architecture:ModelArchitectureConformance",
    "forge_kernel.interfaces.quantizer:Quantizer":
        "forge_kernel.testing.conformance.quantizer:QuantizerConformance",
    "forge_kernel.interfaces.trainer:Trainer":
        "forge_kernel.testing.conformance.trainer:TrainerConformance",
    "forge_kernel.interfaces.tool:Tool":
        "forge_kernel.testing.conformance.tool:ToolConformance",
    "forge_kernel.interfaces.endpoint:Endpoint":
        "forge_kernel.testing.conformance.endpoint:EndpointConformance",
    "forge_kernel.interfaces.endpoint:Middleware":
        "forge_kernel.testing.conformance.endpoint:MiddlewareConformance",
}
"""``module:Interface`` -> ``module:ConformanceClass``. Modules are imported on use only
(several need torch)."""
