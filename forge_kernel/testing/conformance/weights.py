"""Random :class:`WeightTensor` objects of any GGML type, for backend conformance tests.

Types gguf-py can quantize are produced from Gaussian values; for the K-quants (which gguf-py only
dequantizes) the blocks are random bytes with their float16 scale fields overwritten by small
finite values, which exercises every bit of the packed layout. The decoder is gguf-py's reference
dequantizer, so ``WeightTensor.dequantize()`` is the ground truth a backend must reproduce.
"""

from __future__ import annotations

import numpy as np

from forge_kernel.interfaces.loader import WeightTensor

# Byte offsets of the float16 scale fields inside one block of each K-quant type.
_K_QUANT_F16_FIELDS: dict[str, tuple[int, ...]] = {
    "Q2_K": (80, 82),
    "Q3_K": (108,),
    "Q4_K": (0, 2),
    "Q5_K": (0, 2),
    "Q6_K": (208,),
}

ALL_QTYPES = (
    "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
    "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
)


def _decode(weight: WeightTensor):
    import gguf
    import torch

    qtype = gguf.GGMLQuantizationType[weight.qtype]
    values = gguf.quants.dequantize(np.asarray(weight.data), qtype)
    return torch.from_numpy(np.array(values, dtype=np.float32)).reshape(weight.shape)


def random_weight(qtype: str, shape: tuple[int, ...], seed: int = 0, std: float = 0.05,
                  name: str | None = None) -> WeightTensor:
    """A ``WeightTensor`` of ``qtype`` and torch-order ``shape`` (last dim a multiple of the
    type's block size) with a gguf-py reference decoder."""
    import gguf

    rng = np.random.default_rng(seed)
    qt = gguf.GGMLQuantizationType[qtype]
    values = (rng.standard_normal(shape) * std).astype(np.float32)
    name = name or f"random.{qtype}.weight"
    if qtype == "F32":
        data = values
    elif qtype in _K_QUANT_F16_FIELDS:
        block_size, type_size = gguf.GGML_QUANT_SIZES[qt]
        rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        if shape[-1] % block_size:
            raise ValueError(f"{qtype}: last dimension {shape[-1]} not a multiple of {block_size}")
        blocks = shape[-1] // block_size
        raw = rng.integers(0, 256, size=(rows, blocks, type_size), dtype=np.uint8)
        for offset in _K_QUANT_F16_FIELDS[qtype]:
            scale = (rng.uniform(0.2, 1.0, size=(rows, blocks)) * std / 8).astype(np.float16)
            raw[:, :, offset:offset + 2] = scale.view(np.uint8).reshape(rows, blocks, 2)
        data = raw.reshape(*shape[:-1], blocks * type_size)
    else:
        data = gguf.quants.quantize(values, qt)
    return WeightTensor(name, tuple(shape), qtype, data, _decode)
