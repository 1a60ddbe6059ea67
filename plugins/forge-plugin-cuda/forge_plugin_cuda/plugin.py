"""Hook implementations: the ``cuda`` backend, the ``device-paged`` KV cache, the ``[cuda]``
config section and ``forge cuda`` (availability report).

Free of torch imports so ``forge plugins`` / ``forge --help`` stay fast; torch and Triton
load when a backend or cache is created.
"""

from __future__ import annotations

from typing import Any

from forge_kernel import hookimpl


def _create_cuda_backend(threads: int | None = None, **options: Any) -> Any:
    """Factory for ``registry.create("backend", "cuda", threads=..., device=N, dtype=...)``
    (the engine passes ``device`` from ``--device N`` / ``EngineConfig.device``, which wins
    over ``[cuda] device``); raises
    :class:`~forge_plugin_cuda.availability.BackendUnavailable` with the reason when CUDA
    cannot be used here."""
    from forge_plugin_cuda.backend import CudaBackend

    return CudaBackend(threads=threads, **options)


def _availability(device: int | str | None = None) -> tuple[bool, str]:
    from forge_plugin_cuda.availability import cpu_only_torch_reason

    reason = cpu_only_torch_reason()  # torch-free: `forge plugins` lists this
    if reason is not None:
        return False, reason
    from forge_plugin_cuda.backend import CudaBackend

    return CudaBackend.availability(device)


# Readable without creating the backend (for listings that want to show it).
_create_cuda_backend.availability = _availability



def _create_device_paged(spec, config=None):
    from forge_plugin_cuda.kv_cache import DevicePagedKVCache

    return DevicePagedKVCache(spec, config, attention=_settings().attention)


def _settings():
    from forge_plugin_cuda import settings

    return settings.current()


@hookimpl
def forge_register_backends(register) -> None:
    register("cuda", _create_cuda_backend)


@hookimpl
def forge_register_kv_caches(register) -> None:
    register("device-paged", _create_device_paged)


@hookimpl
def forge_register_config_sections(register) -> None:
    from forge_plugin_cuda.settings import CudaSettings

    register("cuda", CudaSettings)


@hookimpl
def forge_configure(config) -> None:
    from forge_plugin_cuda import settings

    settings.configure(config.section("cuda"))


@hookimpl
def forge_register_commands(cli) -> None:
    from forge_plugin_cuda.cli import cuda_command

    cli.add_command(cuda_command)
