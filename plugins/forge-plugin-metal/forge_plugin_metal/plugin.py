"""Hook implementations: the ``metal`` backend (torch imported only when it is created)."""

from __future__ import annotations

from typing import Any

from forge_kernel import hookimpl


def _create_metal_backend(threads: int | None = None, **options: Any) -> Any:
    """Factory for ``registry.create("backend", "metal", threads=..., dtype=...)``."""
    from forge_plugin_metal.backend import MetalBackend

    return MetalBackend(threads=threads, **options)


def _availability() -> tuple[bool, str]:
    from forge_plugin_metal.availability import mps_availability, off_macos_reason

    reason = off_macos_reason()  # torch-free: `forge plugins` lists this
    return (False, reason) if reason else mps_availability()


_create_metal_backend.availability = _availability


@hookimpl
def forge_register_backends(register) -> None:
    register("metal", _create_metal_backend)
