"""Small helpers the family files share (RoPE tables from a source)."""

from __future__ import annotations

from typing import Any

from forge_kernel.errors import ModelFormatError
from forge_kernel.interfaces.backend import Backend
from forge_kernel.interfaces.loader import ModelSource
from forge_plugin_models.layers import RotaryTable, rope_inv_freq


def rope_table(source: ModelSource, backend: Backend, base: float,
               scaling: dict[str, Any] | None) -> RotaryTable:
    """A rotary table for ``source``'s head size and context length with RoPE ``base``.

    Uses the file's ``rope_freqs.weight`` (llama.cpp's precomputed Llama 3.1 factors) when present.
    """
    cfg = source.config
    factors = None
    if "rope_freqs.weight" in source.tensors:
        factors = backend.dense(source.tensor("rope_freqs.weight")).float()
    try:
        inv_freq = rope_inv_freq(cfg.head_dim, float(base), scaling, factors)
    except (ValueError, KeyError) as exc:  # unsupported type, missing factor, bad rope_freqs
        raise ModelFormatError(source.path, f"RoPE settings: {exc}") from None
    return RotaryTable(inv_freq, cfg.context_length)
