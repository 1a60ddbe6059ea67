"""Quantizers: rewrite a model's weights in a smaller format."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forge_kernel.interfaces.loader import ModelSource


class Quantizer(ABC):
    """Writes a quantized copy of a model. Factory: ``factory()``."""

    name: str
    types: tuple[str, ...]
    """Target types this quantizer writes (``Q4_0``, ``Q8_0``, ...)."""

    @abstractmethod
    def quantize(
        self,
        source: ModelSource,
        output: Path,
        qtype: str,
        progress: Callable[[int, int], None] | None = None,
    ) -> Path:
        """Write ``source`` quantized to ``qtype`` at ``output``; ``progress(done, total)`` is
        called per tensor. The output appears atomically (temp file then rename)."""
