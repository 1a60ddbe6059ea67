"""Weight preparation for device backends: GGUF tensors (any quantization) dequantized on the
host a row chunk at a time, cast to the compute dtype and copied to the device.

No 4/8-bit form is kept on the device: every matrix becomes bf16/fp16, so products are plain
cuBLAS GEMMs through ``F.linear``. Chunking bounds the float32 host temporary (the 262144 x 640
Gemma 3 embedding would otherwise need a 670 MB float32 copy) and the device receives the
already-narrowed dtype (half the transfer of float32).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from forge_kernel.interfaces.loader import WeightTensor

CHUNK_ELEMENTS = 1 << 22
"""Elements dequantized per step (16 MiB of float32 on the host)."""

DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
          "float32": torch.float32, "fp32": torch.float32}
"""Accepted spellings of a compute dtype (``[cuda] dtype`` / ``dtype=`` option)."""


def parse_dtype(value: str | torch.dtype | None, default: torch.dtype) -> torch.dtype:
    """A compute dtype from its name (``bf16``, ``float16``...); a clear error otherwise."""
    if value is None:
        return default
    if isinstance(value, torch.dtype):
        if value not in DTYPES.values():
            raise ValueError(f"unsupported compute dtype {value} (use bfloat16, float16 or "
                             f"float32)")
        return value
    try:
        return DTYPES[str(value).strip().lower()]
    except KeyError:
        raise ValueError(f"unknown compute dtype {value!r} (known: {sorted(DTYPES)})") from None


def _float32(weight: WeightTensor) -> torch.Tensor:
    out = weight.dequantize()
    if not isinstance(out, torch.Tensor):
        out = torch.as_tensor(out)
    out = out.to(torch.float32)
    if out.numel() != _numel(weight.shape):
        raise ValueError(f"tensor {weight.name!r}: decoder returned shape {tuple(out.shape)}, "
                         f"expected {tuple(weight.shape)}")
    return out.reshape(weight.shape)


def row_chunks(weight: WeightTensor, chunk_elements: int = CHUNK_ELEMENTS):
    """Yield ``(begin, end, float32 rows)`` of a 2-D weight, slicing its stored rows when the
    storage's first axis is the row axis (GGUF's is), else dequantizing once."""
    rows, cols = weight.shape
    data = weight.data
    step = max(1, chunk_elements // max(cols, 1))
    if getattr(data, "ndim", 0) != 2 or data.shape[0] != rows or step >= rows:
        yield 0, rows, _float32(weight)
        return
    for begin in range(0, rows, step):
        end = min(rows, begin + step)
        part = dataclasses.replace(weight, data=data[begin:end], shape=(end - begin, cols))
        yield begin, end, _float32(part)


def to_device_matrix(weight: WeightTensor, dtype: torch.dtype, device: str | torch.device,
                     chunk_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """The 2-D ``weight`` as a contiguous ``dtype`` tensor on ``device``.

    Each chunk is rounded to ``dtype`` on the host, exactly as ``tensor.to(dtype)`` rounds the
    whole float32 dequantization (round to nearest even), so the device copy equals
    ``weight.dequantize().to(dtype)`` bit for bit.
    """
    if len(weight.shape) != 2:
        raise ValueError(f"weight {weight.name!r} must be 2-D [rows, cols], got shape "
                         f"{tuple(weight.shape)}")
    out = torch.empty(tuple(weight.shape), dtype=dtype, device=device)
    for begin, end, block in row_chunks(weight, chunk_elements):
        out[begin:end].copy_(block.to(dtype))
    return out


def to_device_dense(weight: WeightTensor, device: str | torch.device) -> torch.Tensor:
    """A small tensor (norm weights, biases) as float32 on ``device``, exact."""
    return _float32(weight).contiguous().to(device)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n
