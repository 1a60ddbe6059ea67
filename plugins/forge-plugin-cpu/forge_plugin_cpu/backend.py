"""The ``cpu`` backend: where weights live in memory and which kernels multiply them."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch

from forge_kernel.interfaces.backend import Backend
from forge_kernel.interfaces.loader import PreparedWeights
from forge_plugin_cpu import layerops, ops_int8
from forge_plugin_cpu.dequant import dequantize_fp32, dequantize_fp32_chunked
from forge_plugin_cpu.memory import release_file_pages, trim_heap
from forge_plugin_cpu.ops_fp32 import Fp32Embedding, Fp32Linear
from forge_plugin_cpu.ops_int8 import Int8Embedding, Int8Linear
from forge_plugin_cpu.packed import Q5Matrix, concat_packed, to_packed
from forge_plugin_cpu.quantize import to_int8
from forge_plugin_cpu.threads import physical_cores

if TYPE_CHECKING:
    from forge_kernel.interfaces.backend import EmbeddingOp, LinearOp
    from forge_kernel.interfaces.loader import WeightTensor

PRECISIONS = ("int8", "exact")
"""``int8`` (default, fast): matrices in int8 with one scale per 32 (Q6_K: 16) columns, every
product by one row-invariant kernel (AVX512-VNNI int8 x int8 when compiled, else numba int8 x
float32; see :mod:`~forge_plugin_cpu.ops_int8`). ``exact``: every weight dequantized to float32
(bit-for-bit the loader's dequantization), ``F.linear`` in float32. Use ``exact`` for
correctness tests against a float32 reference."""

ENV_PRECISION = "FORGE_CPU_WEIGHTS"
_ALIASES = {"fp32": "exact", "exact": "exact", "int8": "int8", "fast": "int8"}


class CpuBackend(Backend):
    """CPU backend. ``threads`` defaults to the number of physical cores; ``precision`` picks
    the in-memory weight form (see :data:`PRECISIONS`). When ``precision`` is None the
    environment variable ``FORGE_CPU_WEIGHTS`` (``int8``/``fast`` or ``fp32``/``exact``) decides,
    else ``int8``. 1-D tensors (norms, biases) are always float32.
    """

    name = "cpu"
    device = "cpu"

    def __init__(self, threads: int | None = None, precision: str | None = None) -> None:
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"cpu backend: threads must be a positive integer, got {threads!r}")
        self.threads = threads or physical_cores()
        torch.set_num_threads(self.threads)
        self.precision = _resolve_precision(precision)
        # int8 only: the fused kernels round differently from torch, and ``exact`` is the
        # bit-for-bit reference path.
        if self.precision == "int8" and layerops.AVAILABLE:
            self.layer_ops = layerops.CpuLayerOps(self.threads)
        # Prepared matrices keyed by their storage, so a tied embedding / LM head shares memory.
        self._prepared = PreparedWeights()

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        return True, ""

    @property
    def compute_dtype(self) -> torch.dtype:
        return torch.float32

    def linear(self, weight: WeightTensor, bias: WeightTensor | None = None) -> LinearOp:
        _check_matrix(weight, "linear")
        b = self.dense(bias) if bias is not None else None
        if b is not None and b.shape != (weight.shape[0],):
            raise ValueError(
                f"bias {bias.name!r} has shape {tuple(b.shape)}, expected ({weight.shape[0]},) "
                f"for weight {weight.name!r}"
            )
        if self.precision == "int8":
            return Int8Linear(self._matrix(weight, packed=True), b, self.threads)
        return Fp32Linear(self._matrix(weight), b)

    def fused_linear(self, weights: list[WeightTensor],
                     biases: list[WeightTensor | None] | None = None) -> LinearOp | None:
        """One op computing ``cat([x @ w.T + b for w, b in ...], -1)`` for matrices sharing
        their input (q/k/v, gate/up): one kernel call and one activation quantization instead
        of several. None when the weights cannot be fused (``exact`` precision keeps separate
        float32 products, bit-identical to the reference; differing group sizes or widths);
        the caller then builds one op per weight."""
        if self.precision != "int8" or len(weights) < 2:
            return None
        for w in weights:
            _check_matrix(w, "linear")
        if len({w.shape[1] for w in weights}) != 1:
            return None
        parts = [self._convert(w, packed=True) for w in weights]
        fused = concat_packed(parts)  # mixed (a Q8_0 v among Q5_0 q/k): all int8
        if fused is None:
            return None
        for w in weights:
            release_file_pages(w.data)
        biases = biases or [None] * len(weights)
        bias = None
        if any(b is not None for b in biases):
            bias = torch.cat([self.dense(b) if b is not None else torch.zeros(w.shape[0])
                              for w, b in zip(weights, biases, strict=True)])
        del parts
        trim_heap()
        return Int8Linear(fused, bias, self.threads)

    def embedding(self, weight: WeightTensor) -> EmbeddingOp:
        _check_matrix(weight, "embedding")
        if self.precision == "int8":
            return Int8Embedding(self._matrix(weight))  # int8: rows are looked up directly
        return Fp32Embedding(self._matrix(weight))

    def dense(self, weight: WeightTensor) -> torch.Tensor:
        return dequantize_fp32(weight)

    def describe(self) -> str:
        if self.precision == "int8":
            if ops_int8.VNNI:
                how = "GGUF blocks kept native (Q8_0/Q5_0/Q4_K/Q6_K), AVX512-VNNI int8 x int8"
            else:
                how = "int8 weights (32/16-column blocks), numba int8 x float32"
            kernels = f"{how} for every row count"
        else:
            kernels = "float32 weights, F.linear"
        if self.layer_ops is not None:
            kernels += "; fused C norm/RoPE/activation kernels"
        return f"cpu: {self.threads} threads, {kernels}"

    def _matrix(self, weight: WeightTensor, packed: bool = False) -> Any:
        """The prepared form of a matrix, shared by every op built from the same storage
        (``packed``: a 5-bit form is acceptable, as for products but not embedding lookups)."""
        variant = ""
        found = self._prepared.get(weight)
        if found is not None and isinstance(found, Q5Matrix) and not packed:
            variant = "int8"  # rare: a Q5_0 table used as embedding after a product
            found = self._prepared.get(weight, variant)
        if found is None:
            found = self._convert(weight, packed)
            self._prepared.put(weight, found, variant)
            release_file_pages(weight.data)
            trim_heap()
        return found

    def _convert(self, weight: WeightTensor, packed: bool) -> Any:
        if self.precision != "int8":
            return dequantize_fp32_chunked(weight)
        if ops_int8.VNNI:  # the kernel's stored-order forms (packed.py)
            return to_packed(weight, lookup=not packed)
        return to_int8(weight)


def _resolve_precision(precision: str | None) -> str:
    if precision is None:
        env = os.environ.get(ENV_PRECISION, "").strip().lower()
        if not env:
            return "int8"
        if env not in _ALIASES:
            raise ValueError(f"{ENV_PRECISION}={env!r} is not one of {sorted(_ALIASES)}")
        return _ALIASES[env]
    if precision not in _ALIASES:
        raise ValueError(
            f"cpu backend: precision must be one of {sorted(_ALIASES)}, got {precision!r}"
        )
    return _ALIASES[precision]


def _check_matrix(weight: WeightTensor, what: str) -> None:
    if len(weight.shape) != 2:
        raise ValueError(
            f"cpu backend: {what} weight {weight.name!r} must be 2-D [rows, cols], "
            f"got shape {tuple(weight.shape)}"
        )
