"""The block formats we write: their sizes, kernels, and the float16 fields' byte offsets.

:func:`quantize_rows` is the one entry point: float32 rows in, the GGUF byte layout out. Rows
are processed in chunks so the temporary weights stay small for the large embedding matrices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from forge_kernel.errors import ForgeError


class QuantizeError(ForgeError):
    """A tensor or a request that the chosen format cannot represent."""


@dataclass(slots=True, frozen=True)
class BlockFormat:
    """One GGML tensor type we can produce."""

    name: str
    block: int
    """Weights per block; a row must be a multiple of it."""
    nbytes: int
    """Bytes per block."""
    kernel: Callable | None
    """``kernel(x, [w,] out, halves)``; ``None`` for plain float types."""
    half_offsets: tuple[int, ...] = ()
    """Byte offsets of the float16 fields the kernel returns in ``halves``."""
    weighted: bool = True
    """Whether the kernel takes importance weights (its scale is searched)."""
    plain: Callable | None = None
    """``plain(x, out, halves)``: the kernel used when no importance matrix is given, if the
    format has one (Q5_1: ggml's reference rounding measured better than the search)."""

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.nbytes / self.block


def _formats() -> dict[str, BlockFormat]:
    from forge_plugin_ggml_quant import kernels_k as k
    from forge_plugin_ggml_quant import kernels_legacy as lg

    return {f.name: f for f in [
        BlockFormat("F32", 1, 4, None, weighted=False),
        BlockFormat("F16", 1, 2, None, weighted=False),
        BlockFormat("BF16", 1, 2, None, weighted=False),
        BlockFormat("Q8_0", 32, 34, lg.q8_0, (0,), weighted=False),
        BlockFormat("Q4_0", 32, 18, lg.q4_0, (0,)),
        BlockFormat("Q5_0", 32, 22, lg.q5_0, (0,)),
        BlockFormat("Q5_1", 32, 24, lg.q5_1, (0, 2), plain=lg.q5_1_plain),
        BlockFormat("Q4_K", 256, 144, k.q4_k, (0, 2)),
        BlockFormat("Q5_K", 256, 176, k.q5_k, (0, 2)),
        BlockFormat("Q6_K", 256, 210, k.q6_k, (208,)),
    ]}


_CACHE: dict[str, BlockFormat] = {}


def block_format(name: str) -> BlockFormat:
    """The format called ``name``; :class:`QuantizeError` lists the known ones otherwise."""
    if not _CACHE:
        _CACHE.update(_formats())
    try:
        return _CACHE[name]
    except KeyError:
        raise QuantizeError(f"unknown tensor type {name!r}; known: {', '.join(_CACHE)}") from None


def default_weights(x: np.ndarray, column_importance: np.ndarray | None) -> np.ndarray:
    """Importance of each weight in ``x`` (``[rows, n]``) for the scale searches.

    Without an importance matrix: ``rms(32-weight group) + |x|`` (large weights matter more,
    none is ignored). With one: ``imatrix[column] * sqrt(mean_row(x^2) + x^2)``, the expected
    squared-activation of each input column scaling the error of the weights it multiplies.
    """
    ax = np.abs(x)
    if column_importance is None:
        groups = x.reshape(x.shape[0], -1, 32)
        rms = np.sqrt(np.mean(groups * groups, axis=-1, keepdims=True))
        return (ax.reshape(groups.shape) + rms).reshape(x.shape).astype(np.float32)
    sigma2 = np.mean(x * x, axis=1, keepdims=True)
    return (column_importance[None, :] * np.sqrt(sigma2 + x * x)).astype(np.float32)


CHUNK_ELEMENTS = 1 << 22


def quantize_rows(x: np.ndarray, qtype: str,
                  column_importance: np.ndarray | None = None) -> np.ndarray:
    """Encode float32 ``x`` (``[rows, row_length]``) as ``qtype``.

    Returns ``uint8 [rows, row_bytes]`` (float types: the typed array itself). A row length that
    is not a multiple of the block size is a :class:`QuantizeError`.
    """
    fmt = block_format(qtype)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise QuantizeError(f"expected a 2-D array of rows, got shape {x.shape}")
    rows, n = x.shape
    if fmt.name == "F32":
        return x
    if fmt.name == "F16":
        return x.astype(np.float16)
    if fmt.name == "BF16":  # round to nearest even on the upper 16 bits
        bits = x.view(np.uint32).astype(np.uint64)
        return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    if n % fmt.block:
        raise QuantizeError(f"row length {n} is not a multiple of {fmt.name}'s block size "
                            f"{fmt.block}")
    if column_importance is not None and column_importance.shape != (n,):
        raise QuantizeError(f"importance vector has {column_importance.shape} entries for rows "
                            f"of {n}")
    blocks_per_row = n // fmt.block
    out = np.zeros((rows * blocks_per_row, fmt.nbytes), np.uint8)
    step = max(1, CHUNK_ELEMENTS // n)
    for start in range(0, rows, step):
        part = x[start:start + step]
        blocks = part.reshape(-1, fmt.block)
        dest = out[start * blocks_per_row:(start + part.shape[0]) * blocks_per_row]
        halves = np.zeros((blocks.shape[0], len(fmt.half_offsets)), np.float32)
        if fmt.plain is not None and column_importance is None:
            fmt.plain(blocks, dest, halves)
        elif fmt.weighted:
            w = default_weights(part, column_importance).reshape(-1, fmt.block)
            fmt.kernel(blocks, w, dest, halves)
        else:
            fmt.kernel(blocks, dest, halves)
        for k, offset in enumerate(fmt.half_offsets):
            dest[:, offset:offset + 2] = halves[:, k].astype(np.float16)[:, None].view(np.uint8)
    return out.reshape(rows, blocks_per_row * fmt.nbytes)
