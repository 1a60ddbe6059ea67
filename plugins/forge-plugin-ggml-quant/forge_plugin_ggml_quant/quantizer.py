"""The ``ggml`` :class:`~forge_kernel.interfaces.quantizer.Quantizer`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from forge_kernel.interfaces.loader import ModelSource
from forge_kernel.interfaces.quantizer import Quantizer
from forge_plugin_ggml_quant.mixes import FILE_TYPES


class GGMLQuantizer(Quantizer):
    """Writes GGUF files llama.cpp loads; ``types`` are llama-quantize's file type names."""

    name = "ggml"
    types = tuple(FILE_TYPES)

    def quantize(self, source: ModelSource | Path | str, output: Path, qtype: str,
                 progress: Callable[[int, int], None] | None = None) -> Path:
        """Quantize the file behind ``source`` (a loaded source's ``path``, or a path)."""
        from forge_plugin_ggml_quant.convert import quantize_file
        from forge_plugin_ggml_quant.formats import QuantizeError

        path = Path(source.path if isinstance(source, ModelSource) else source)
        try:
            summary = quantize_file(path, Path(output), qtype,
                                    progress=(lambda d, t, _n: progress(d, t)) if progress
                                    else None)
        except QuantizeError as exc:
            raise ValueError(str(exc)) from exc
        return summary.output
