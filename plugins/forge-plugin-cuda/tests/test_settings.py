"""The [cuda] section: environment variables reach the backend's defaults; device spellings."""

from __future__ import annotations

import pytest
from forge_plugin_cuda import settings
from forge_plugin_cuda.backend import resolve_device_index

from forge_kernel.plugins import get_host


@pytest.fixture(autouse=True)
def _fresh_settings():
    settings.reset()
    yield
    settings.reset()


def test_environment_sets_device_and_dtype(monkeypatch):
    get_host()  # sections are declared by discovered plugins
    monkeypatch.setenv("FORGE_CUDA_DEVICE", "3")
    monkeypatch.setenv("FORGE_CUDA_DTYPE", "float16")
    current = settings.current()
    assert (current.device, current.dtype, current.attention) == (3, "float16", "auto")
    assert resolve_device_index(None) == 3


def test_forge_configure_hook_wins():
    from forge_plugin_cuda.settings import CudaSettings

    settings.configure(CudaSettings(device=1, attention="torch"))
    assert resolve_device_index(None) == 1 and settings.current().attention == "torch"


def test_device_spellings():
    settings.configure(None)
    assert [resolve_device_index(d) for d in (2, "5", "cuda:7", None)] == [2, 5, 7, 0]
    with pytest.raises(ValueError, match="index or 'cuda:N'"):
        resolve_device_index("gpu0")


def test_engine_device_wins_over_the_setting(monkeypatch):
    """``--device N`` reaches the factory as ``device=N`` and beats ``FORGE_CUDA_DEVICE``."""
    from forge_plugin_cuda import backend
    from forge_plugin_cuda.availability import BackendUnavailable

    from forge_kernel.engine.builder import _create_backend
    from forge_kernel.engine.config import EngineConfig

    asked = []
    monkeypatch.setattr(backend, "cuda_availability",
                        lambda index: asked.append(index) or (False, f"probe {index}"))
    monkeypatch.setenv("FORGE_CUDA_DEVICE", "3")
    settings.reset()
    assert backend.CudaBackend.availability() == (False, "probe 3")
    assert backend.CudaBackend.availability(2) == (False, "probe 2")
    assert backend.CudaBackend.availability("gpu0")[0] is False  # a bad spelling is a reason
    with pytest.raises(BackendUnavailable, match="probe 1"):
        _create_backend(EngineConfig(backend="cuda", device=1))
    assert asked == [3, 2, 1]
    settings.reset()
