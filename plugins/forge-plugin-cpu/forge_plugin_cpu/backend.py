"""The ``cpu`` backend: where weights live in memory and which kernels multiply them."""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING, Any

import torch

from forge_kernel.interfaces.backend import Backend
from forge_plugin_cpu.dequant import dequantize_fp32, dequantize_fp32_chunked
from forge_plugin_cpu.ops_fp32 import Fp32Embedding, Fp32Linear
from forge_plugin_cpu.threads import physical_cores

if TYPE_CHECKING:
    from forge_kernel.interfaces.model import WeightTensor

PRECISIONS = ("exact",)
"""``exact``: every weight dequantized to float32 (bit-for-bit the loader's dequantization)."""

ENV_PRECISION = "FORGE_CPU_WEIGHTS"
_ENV_ALIASES = {"fp32": "exact", "exact": "exact"}


class CpuBackend(Backend):
    """CPU backend. ``threads`` defaults to the number of physical cores; ``precision`` picks
    the in-memory weight form (``exact`` = float32). The environment variable
    ``FORGE_CPU_WEIGHTS`` (``fp32``/``exact``) overrides the default when ``precision`` is None.
    """

    name = "cpu"
    device = "cpu"

    def __init__(self, threads: int | None = None, precision: str | None = None) -> None:
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"cpu backend: threads must be a positive integer, got {threads!r}")
        self.threads = threads or physical_cores()
        torch.set_num_threads(self.threads)
        self.precision = _resolve_precision(precision)
        # Prepared matrices keyed by their storage, so a tied embedding / LM head shares memory.
        self._prepared: weakref.WeakValueDictionary[Any, Any] = weakref.WeakValueDictionary()

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        return True, ""

    @property
    def compute_dtype(self) -> torch.dtype:
        return torch.float32

    def linear(self, weight: WeightTensor, bias: WeightTensor | None = None) -> Fp32Linear:
        _check_matrix(weight, "linear")
        b = self.dense(bias) if bias is not None else None
        if b is not None and b.shape != (weight.shape[0],):
            raise ValueError(
                f"bias {bias.name!r} has shape {tuple(b.shape)}, expected ({weight.shape[0]},) "
                f"for weight {weight.name!r}"
            )
        return Fp32Linear(self._fp32_matrix(weight), b)

    def embedding(self, weight: WeightTensor) -> Fp32Embedding:
        _check_matrix(weight, "embedding")
        return Fp32Embedding(self._fp32_matrix(weight))

    def dense(self, weight: WeightTensor) -> torch.Tensor:
        return dequantize_fp32(weight)

    def describe(self) -> str:
        return f"cpu: {self.threads} threads, weights {self.precision} (float32 F.linear)"

    def _fp32_matrix(self, weight: WeightTensor) -> torch.Tensor:
        key = _storage_key(weight)
        found = self._prepared.get(key)
        if found is None:
            found = dequantize_fp32_chunked(weight)
            self._prepared[key] = found
        return found


def _resolve_precision(precision: str | None) -> str:
    if precision is None:
        env = os.environ.get(ENV_PRECISION, "").strip().lower()
        if not env:
            return "exact"
        if env not in _ENV_ALIASES:
            raise ValueError(
                f"{ENV_PRECISION}={env!r} is not one of {sorted(_ENV_ALIASES)}"
            )
        return _ENV_ALIASES[env]
    if precision not in PRECISIONS:
        raise ValueError(f"cpu backend: precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def _storage_key(weight: WeightTensor) -> tuple[Any, ...]:
    data = weight.data
    try:
        address = data.__array_interface__["data"][0]
    except (AttributeError, KeyError, TypeError):
        address = id(data)
    return (weight.name, weight.qtype, tuple(weight.shape), address)


def _check_matrix(weight: WeightTensor, what: str) -> None:
    if len(weight.shape) != 2:
        raise ValueError(
            f"cpu backend: {what} weight {weight.name!r} must be 2-D [rows, cols], "
            f"got shape {tuple(weight.shape)}"
        )
