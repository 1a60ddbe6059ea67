"""Tools a model can call (retrieval, calculators, ...)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class Tool(ABC):
    """A function exposed to models. Factory: ``factory()``."""

    name: str
    description: str
    parameters: dict[str, Any]
    """JSON schema of the arguments (the OpenAI ``function.parameters`` shape)."""

    @abstractmethod
    def __call__(self, **arguments: Any) -> str:
        """Run the tool; the returned text is given back to the model."""
