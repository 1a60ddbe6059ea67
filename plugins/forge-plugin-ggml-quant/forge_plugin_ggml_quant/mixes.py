"""Which type each tensor gets for a requested file type, following llama.cpp's mixes.

Rules (as llama-quantize applies them to the dense architectures forge runs):

* only tensors of 2+ dimensions whose names end in ``.weight`` and not in ``_norm.weight`` are
  quantized; the rest keep their float type;
* the output projection (or the token embedding when the head is tied) gets Q6_K, or Q8_0 when
  its rows are not a multiple of the default type's block;
* ``_M`` mixes: ``attn_v`` and ``ffn_down`` of the "more bits" layers (first and last eighth,
  and every third in between) get Q6_K; Q4_K_S: first four ``attn_v`` and first eighth of
  ``ffn_down`` get Q5_K;
* a k-quant that does not divide a row falls back: Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0,
  and to F16 when that does not divide it either. The legacy 32-blocks have no fallback: such a
  row is an error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from forge_plugin_ggml_quant.formats import QuantizeError, block_format


@dataclass(slots=True, frozen=True)
class FileType:
    """A ``--type`` choice: its default tensor type and ``general.file_type`` id."""

    name: str
    default: str
    file_type: int
    """llama.cpp's ``LLAMA_FTYPE_*`` value, written to ``general.file_type``."""


FILE_TYPES: dict[str, FileType] = {f.name: f for f in [
    FileType("F32", "F32", 0), FileType("F16", "F16", 1), FileType("BF16", "BF16", 32),
    FileType("Q8_0", "Q8_0", 7), FileType("Q4_0", "Q4_0", 2), FileType("Q5_0", "Q5_0", 8),
    FileType("Q5_1", "Q5_1", 9),
    FileType("Q4_K_S", "Q4_K", 14), FileType("Q4_K_M", "Q4_K", 15),
    FileType("Q5_K_S", "Q5_K", 16), FileType("Q5_K_M", "Q5_K", 17),
    FileType("Q6_K", "Q6_K", 18),
]}
ALIASES = {"Q4_K": "Q4_K_S", "Q5_K": "Q5_K_S"}
"""Plain k-quant names mean the ``_S`` mix, as in llama-quantize's list."""

_FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
_LAYER = re.compile(r"^blk\.(\d+)\.")


def file_type(name: str) -> FileType:
    """The file type ``name`` (case-insensitive); unknown names list the choices."""
    key = ALIASES.get(name.upper(), name.upper())
    if key not in FILE_TYPES:
        choices = ", ".join(list(FILE_TYPES) + list(ALIASES))
        raise QuantizeError(f"unknown --type {name!r}; choose one of {choices}")
    return FILE_TYPES[key]


def is_quantizable(name: str, shape: Sequence[int]) -> bool:
    """Whether llama.cpp would quantize this tensor (matrices only, never norms)."""
    return (len(shape) >= 2 and name.endswith(".weight") and not name.endswith("_norm.weight")
            and "position_embd" not in name)


def use_more_bits(layer: int, layers: int) -> bool:
    """The layers the ``_M`` mixes give extra bits: first/last eighth, every third between."""
    return layer < layers // 8 or layer >= 7 * layers // 8 or (layer - layers // 8) % 3 == 2


def _divides(qtype: str, row: int) -> bool:
    return row % block_format(qtype).block == 0


class MixPlanner:
    """Chooses tensor types for one model: build once with all tensor names, then ``choose``."""

    def __init__(self, ftype: FileType, names: Sequence[str]) -> None:
        self.ftype = ftype
        self.has_output = "output.weight" in names
        self.layers = {kind: sum(1 for n in names if f".{kind}.weight" in n)
                       for kind in ("attn_v", "ffn_down")}

    def choose(self, name: str, shape: Sequence[int], source_type: str) -> str:
        """Type for tensor ``name`` of torch ``shape`` (row length ``shape[-1]``) stored as
        ``source_type``."""
        ft = self.ftype
        if not is_quantizable(name, shape):
            return source_type if source_type in ("F32", "F16", "BF16") else "F32"
        if ft.default in ("F32", "F16", "BF16"):
            return ft.default
        row = int(shape[-1])
        qtype = self._mix(name, row)
        if not _divides(qtype, row):
            if qtype not in _FALLBACK:
                raise QuantizeError(
                    f"tensor {name!r}: rows of {row} are not a multiple of {qtype}'s block size "
                    f"{block_format(qtype).block}; pick a k-quant type (they fall back) or F16")
            qtype = _FALLBACK[qtype]
            if not _divides(qtype, row):
                qtype = "F16"
        return qtype

    def _mix(self, name: str, row: int) -> str:
        ft, default = self.ftype, self.ftype.default
        match = _LAYER.match(name)
        layer = int(match.group(1)) if match else 0
        if name == "output.weight" or (not self.has_output and name == "token_embd.weight"):
            if not _divides(default, row):
                return "Q8_0"
            return default if default == "Q8_0" else "Q6_K"
        if ".attn_v.weight" in name:
            if ft.name in ("Q4_K_M", "Q5_K_M") and use_more_bits(layer, self.layers["attn_v"]):
                return "Q6_K"
            if ft.name == "Q4_K_S" and layer < 4:
                return "Q5_K"
        if ".ffn_down" in name:
            n = self.layers["ffn_down"]
            if ft.name in ("Q4_K_M", "Q5_K_M") and use_more_bits(layer, n):
                return "Q6_K"
            if ft.name == "Q4_K_S" and layer < n // 8:
                return "Q5_K"
        if ".attn_qkv.weight" in name:
            if ft.name == "Q4_K_M":
                return "Q5_K"
            if ft.name == "Q5_K_M":
                return "Q6_K"
        return default
