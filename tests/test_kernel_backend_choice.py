"""Backend availability in ``forge plugins`` (exit 1 and the reason when an installed backend
cannot run here), ``--device N`` -> ``EngineConfig.device`` -> the backend factory (refused by
backends without devices, the cpu backend included), and ``Backend.preferred_kv_cache`` as the
builder's KV cache when the user names none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge_kernel import hookimpl
from forge_kernel.engine.config import EngineConfig
from forge_kernel.errors import ConfigError


def _factory(ok: bool, reason: str = "", *, raises: bool = False):
    def create(threads=None, device=None):  # noqa: ANN001, ANN202 - a stand-in factory
        return ("backend", threads, device)

    def availability():  # noqa: ANN202
        if raises:
            raise RuntimeError("driver query crashed")
        return ok, reason

    create.availability = availability
    return create


class Backends:
    """A plugin registering backends from ``{name: factory}``."""

    def __init__(self, factories: dict) -> None:
        self.factories = factories

    @hookimpl
    def forge_register_backends(self, register) -> None:  # noqa: ANN001
        for name, factory in self.factories.items():
            register(name, factory)


def test_plugins_shows_availability_and_exits_1_for_an_unusable_backend(forge_cli,
                                                                         register_plugin):
    register_plugin(Backends({"fast": _factory(True)}), name="good")
    ok = forge_cli("plugins")
    assert ok.exit_code == 0, ok.stderr
    assert "loaded (fast: available)" in ok.stdout
    register_plugin(Backends({"gpu-x": _factory(False, "no GPU-X device is visible"),
                              "gpu-y": _factory(False, raises=True),
                              "plain": lambda threads=None: None}), name="gpus")
    table = forge_cli("plugins")
    assert table.exit_code == 1
    assert "loaded (gpu-x: unavailable, gpu-y: unavailable)" in table.stdout
    assert ("backend 'gpu-x' (plugin 'gpus') is unavailable: no GPU-X device is visible"
            in table.stderr)
    assert ("backend 'gpu-y' (plugin 'gpus') is unavailable: availability check failed: "
            "RuntimeError: driver query crashed" in table.stderr)
    listed = forge_cli("plugins", "--json")
    assert listed.exit_code == 1
    entries = {e["name"]: e for e in json.loads(listed.stdout)}
    assert entries["good"]["backends"] == [{"name": "fast", "available": True, "reason": ""}]
    assert entries["gpus"]["backends"][0] == {"name": "gpu-x", "available": False,
                                              "reason": "no GPU-X device is visible"}
    assert len(entries["gpus"]["backends"]) == 2  # "plain" has no availability(): not listed


def test_device_reaches_factories_that_take_it(forge_host, register_plugin):
    from forge_kernel.engine.builder import _create_backend

    register_plugin(Backends({"multi": _factory(True), "single": lambda threads=None: "one"}),
                    name="devs")
    assert _create_backend(EngineConfig(backend="multi", device=3, threads=2)) == (
        "backend", 2, 3)
    assert _create_backend(EngineConfig(backend="multi")) == ("backend", None, None)
    assert _create_backend(EngineConfig(backend="single")) == "one"
    with pytest.raises(ConfigError, match="backend 'single' has no device choice; drop "
                                          "--device 1"):
        _create_backend(EngineConfig(backend="single", device=1))


def test_cpu_backend_refuses_other_devices():
    plugin = pytest.importorskip("forge_plugin_cpu.plugin")
    with pytest.raises(ConfigError, match="the cpu backend runs on the host CPU only"):
        plugin._create_cpu_backend(device=1)


def test_device_flag_fills_the_config(monkeypatch):
    from forge_kernel.config import load_config

    monkeypatch.delenv("FORGE_CONFIG", raising=False)
    assert load_config({"device": 2}).engine.device == 2
    assert load_config({}).engine.device is None
    monkeypatch.setenv("FORGE_DEVICE", "1")
    assert load_config({}).engine.device == 1


def test_builder_uses_the_backends_preferred_kv_cache(tmp_path: Path):
    testing = pytest.importorskip("forge_plugin_models.testing")
    pytest.importorskip("forge_plugin_kv_naive")
    from forge_plugin_cpu.backend import CpuBackend

    from forge_kernel.engine.builder import build_engine
    from forge_kernel.plugins import get_host

    class PrefersNaive(CpuBackend):
        preferred_kv_cache = "naive"

    registry = get_host().registry
    registry.add("backend", "prefers-naive", lambda threads=None: PrefersNaive(threads=1),
                 "test")
    try:
        model = testing.write_gguf(testing.make_hf("llama"), tmp_path / "tiny.gguf")
        chosen = build_engine(EngineConfig(model=model, backend="prefers-naive"))
        assert chosen.config.kv_cache == "naive"
        assert type(chosen.kv_cache).__module__.startswith("forge_plugin_kv_naive")
        named = build_engine(EngineConfig(model=model, backend="prefers-naive",
                                          kv_cache="paged"))
        assert named.config.kv_cache == "paged"
        plain = build_engine(EngineConfig(model=model, threads=1))
        assert plain.config.kv_cache == "paged"  # the cpu backend states no preference
    finally:
        registry.remove_plugin("test")
