"""Dequantize :class:`WeightTensor` objects into preallocated float32 tensors, one row chunk
at a time.

Dequantizing the 262144 x 640 embedding of Gemma 3 in one call would create a ~670 MB float32
temporary on top of the result; going through row slices bounds the temporary to one chunk.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from forge_plugin_cpu.memory import release_file_pages

if TYPE_CHECKING:
    from forge_kernel.interfaces.loader import WeightTensor

CHUNK_ELEMENTS = 1 << 22
"""Elements per dequantization chunk (16 MiB of float32)."""


def dequantize_fp32(weight: WeightTensor) -> torch.Tensor:
    """The whole tensor as contiguous float32 of ``weight.shape``; a clear error on shape drift."""
    out = weight.dequantize()
    if not isinstance(out, torch.Tensor):
        out = torch.as_tensor(out)
    out = out.to(torch.float32)
    if tuple(out.shape) != tuple(weight.shape):
        if out.numel() != _numel(weight.shape):
            raise ValueError(
                f"tensor {weight.name!r}: decoder returned shape {tuple(out.shape)}, "
                f"expected {tuple(weight.shape)}"
            )
        out = out.reshape(weight.shape)
    return out.contiguous()


def iter_row_chunks(weight: WeightTensor, chunk_elements: int = CHUNK_ELEMENTS):
    """Yield ``(row_begin, row_end, float32 [rows, cols])`` over a 2-D weight.

    Uses row slices of ``weight.data`` when its first axis is the row axis (GGUF layouts are);
    otherwise dequantizes everything once.
    """
    rows, cols = weight.shape
    data = weight.data
    sliceable = getattr(data, "ndim", 0) == 2 and data.shape[0] == rows
    step = max(1, chunk_elements // max(cols, 1))
    if not sliceable or step >= rows:
        yield 0, rows, dequantize_fp32(weight)
        return
    for begin in range(0, rows, step):
        end = min(rows, begin + step)
        part = dataclasses.replace(weight, data=data[begin:end], shape=(end - begin, cols))
        yield begin, end, dequantize_fp32(part)
        # The consumer is done with this slice: drop its file pages now, so a large tensor
        # never has all of its memory-mapped bytes resident next to its converted copy.
        release_file_pages(data[begin:end])


def dequantize_fp32_chunked(weight: WeightTensor) -> torch.Tensor:
    """Like :func:`dequantize_fp32` for 2-D weights, with a bounded temporary."""
    if len(weight.shape) != 2:
        return dequantize_fp32(weight)
    out = torch.empty(weight.shape, dtype=torch.float32)
    for begin, end, block in iter_row_chunks(weight):
        out[begin:end] = block
    return out


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n
