"""The ``[cuda]`` configuration section (``forge.toml`` / ``FORGE_CUDA_*`` variables)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class CudaSettings:
    """Defaults for the ``cuda`` backend; explicit factory options override them."""

    device: int = 0
    """CUDA device index (``cuda:N``); ``FORGE_CUDA_DEVICE=N``."""
    dtype: str = "bfloat16"
    """Weights and activations: ``bfloat16`` or ``float16``."""
    attention: str = "auto"
    """Paged attention of the ``device-paged`` cache: ``triton``, ``torch`` (gather + SDPA), or
    ``auto`` (Triton on CUDA when it imports)."""


_current: CudaSettings | None = None


def configure(section: object) -> None:
    """Store what ``forge_configure`` read (a non-dataclass section means defaults)."""
    global _current
    _current = section if isinstance(section, CudaSettings) else CudaSettings()


def current() -> CudaSettings:
    """The settings in effect. Commands that never call ``forge_configure`` (``forge run``,
    ``forge cuda``) get the config file and environment read here, once."""
    global _current
    if _current is None:
        try:
            from forge_kernel.config import load_config

            configure(load_config().section("cuda"))
        except Exception:  # noqa: BLE001 - a broken config file is reported by the kernel
            configure(None)
    return _current


def reset() -> None:
    """Forget the settings (tests)."""
    global _current
    _current = None
