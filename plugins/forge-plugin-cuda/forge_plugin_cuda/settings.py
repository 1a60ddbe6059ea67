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
    ``auto`` (Triton when it imports)."""


current = CudaSettings()
"""What ``forge_configure`` last read; factories fall back to it."""
