"""Hook implementations: registers the ``cpu`` backend.

Kept free of torch imports so plugin discovery stays cheap; the backend module (which imports
torch) is loaded only when a backend is actually created.
"""

from __future__ import annotations

from typing import Any

from forge_kernel import hookimpl


def _create_cpu_backend(threads: int | None = None, device: int | str | None = None,
                        **options: Any) -> Any:
    """Factory for ``registry.create("backend", "cpu", threads=..., precision=...)``; the host
    CPU is the only device, so ``device`` may only be ``None``/``0``/``"cpu"``."""
    if device not in (None, 0, "0", "cpu"):
        from forge_kernel.errors import ConfigError

        raise ConfigError(f"the cpu backend runs on the host CPU only (device 0); --device "
                          f"{device} selects a GPU of a GPU backend, e.g. --backend cuda")
    from forge_plugin_cpu.backend import CpuBackend

    return CpuBackend(threads=threads, **options)


@hookimpl
def forge_register_backends(register) -> None:
    """Offer the ``cpu`` backend."""
    register("cpu", _create_cpu_backend)
