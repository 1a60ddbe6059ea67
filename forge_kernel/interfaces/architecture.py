"""Model architectures: a :class:`ModelSource` plus a backend becomes a runnable model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forge_kernel.interfaces.backend import Backend
    from forge_kernel.interfaces.loader import ModelSource
    from forge_kernel.interfaces.model import CausalLM


class ModelArchitecture(ABC):
    """Builds a :class:`CausalLM` from a :class:`ModelSource`."""

    name: str

    @abstractmethod
    def build(self, source: ModelSource, backend: Backend) -> CausalLM:
        """Create the model; weights are prepared through ``backend`` (which may keep them
        quantized). Raises :class:`forge_kernel.errors.ModelFormatError` when a tensor is
        missing or has the wrong shape."""
