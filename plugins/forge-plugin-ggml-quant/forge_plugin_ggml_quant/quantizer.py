"""The ``ggml`` :class:`~forge_kernel.interfaces.quantizer.Quantizer`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from forge_kernel.interfaces.loader import ModelSource
from forge_kernel.interfaces.quantizer import Quantizer
from forge_plugin_ggml_quant.mixes import FILE_TYPES

DEFAULT_TYPE = "Q4_K_M"


class GGMLQuantizer(Quantizer):
    """Writes GGUF files llama.cpp loads; ``types`` are llama-quantize's file type names.

    Options: ``imatrix`` (a llama.cpp imatrix file, ``.dat`` or GGUF, or a name -> vector
    mapping) and ``calibration`` (a text: an importance matrix is computed from it with
    forge's engine first, see :mod:`forge_plugin_ggml_quant.imatrix`). ``bpw`` is refused: a
    GGML file type fixes the bits per weight."""

    name = "ggml"
    types = tuple(FILE_TYPES)
    options = frozenset({"imatrix", "calibration"})

    def __init__(self) -> None:
        self.last_summary = None
        """The :class:`~forge_plugin_ggml_quant.convert.Summary` of the latest run."""
        self.save_imatrix_to: Path | None = None
        """Where a ``calibration`` run also writes its importance matrix (GGUF), if set."""

    def quantize(self, source: ModelSource | Path | str, output: Path, qtype: str | None = None,
                 progress: Callable[[int, int], None] | None = None, **options: Any) -> Path:
        """Quantize the file behind ``source`` (a loaded source's ``path``, or a path)."""
        from forge_plugin_ggml_quant.convert import quantize_file
        from forge_plugin_ggml_quant.formats import QuantizeError
        from forge_plugin_ggml_quant.imatrix import resolve_importance

        given = self.check_options(options)
        path = Path(source.path if isinstance(source, ModelSource) else source)
        try:
            importance, label = resolve_importance(path, given.get("imatrix"),
                                                   given.get("calibration"),
                                                   self.save_imatrix_to)
            summary = quantize_file(path, Path(output), qtype or DEFAULT_TYPE,
                                    imatrix=importance, imatrix_name=label,
                                    progress=(lambda d, t, _n: progress(d, t)) if progress
                                    else None)
        except QuantizeError as exc:
            raise ValueError(str(exc)) from exc
        self.last_summary = summary
        return summary.output
