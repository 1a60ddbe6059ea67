"""Quantizers: rewrite a model's weights in a smaller format (``forge quantize``); contract:
docs/plugins/interfaces.md."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forge_kernel.errors import QuantizerOptionError

if TYPE_CHECKING:
    from forge_kernel.interfaces.loader import ModelSource

OPTIONS: dict[str, str] = {
    "bpw": "float: target average bits per weight (mixed bit-width quantizers)",
    "imatrix": "path of an importance-matrix file (llama.cpp imatrix .dat or GGUF), or a "
               "mapping tensor name -> float32 per-input-column importance",
    "calibration": "path of a UTF-8 calibration text the quantizer runs the model on",
}
"""Every option name the contract defines, with its meaning."""


class Quantizer(ABC):
    """Writes a quantized copy of a model. Factory: ``factory()``."""

    name: str
    types: tuple[str, ...]
    """Target types it writes (``Q4_0``, ...); empty for one driven only by ``bpw``."""
    options: frozenset[str] = frozenset()
    """Which of :data:`OPTIONS` this quantizer accepts."""

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options that were given (not ``None``); refuses unknown or unsupported names."""
        given = {k: v for k, v in options.items() if v is not None}
        for key in given:
            if key not in OPTIONS:
                raise QuantizerOptionError(
                    f"unknown quantizer option {key!r}; the contract defines "
                    f"{', '.join(sorted(OPTIONS))}")
            if key not in self.options:
                accepted = ", ".join(sorted(self.options)) or "no options"
                raise QuantizerOptionError(
                    f"the {self.name!r} quantizer does not support {key!r} (it accepts "
                    f"{accepted})")
        return given

    def report(self) -> str | None:
        """Extra lines ``forge quantize`` prints about the last run; ``None``: none."""
        return None

    @abstractmethod
    def quantize(
        self,
        source: ModelSource | Path,
        output: Path,
        qtype: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        **options: Any,
    ) -> Path:
        """Write ``source`` (loaded, or a path) quantized to ``qtype`` at ``output``; returns
        the written path. ``progress(done, total)`` per tensor; bad ``qtype``: ``ValueError``."""
