"""Our dequantizers are bit-identical to gguf-py's reference (``gguf.quants.dequantize``).

Blocks are random bytes (every bit of the packed layouts exercised) with their float16 scale
fields overwritten by finite random values; types gguf-py can quantize are also checked on real
quantized Gaussian data. Comparison is on the float32 bit patterns, so -0.0/+0.0 and NaN payloads
would count as differences.
"""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
from forge_plugin_gguf.dequant import BLOCKS, dequantize
from forge_plugin_gguf.loader import decode

from forge_kernel.interfaces.loader import WeightTensor

F16_FIELDS = {
    "Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q8_0": (0,),
    "Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,),
}
"""Byte offsets of the float16 scale fields inside one block of each type."""


def _random_blocks(qtype: str, n_blocks: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    size = BLOCKS[qtype][1]
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    for at in F16_FIELDS[qtype]:
        scale = (rng.standard_normal(n_blocks) * rng.choice([1e-3, 1.0, 100.0])).astype(np.float16)
        raw[:, at:at + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    return raw


def _same_bits(ours: torch.Tensor, ref: np.ndarray) -> bool:
    ref = np.ascontiguousarray(ref, dtype=np.float32).reshape(-1)
    return np.array_equal(ours.numpy().reshape(-1).view(np.uint32), ref.view(np.uint32))


def test_every_loader_type_has_a_block_table_entry_or_is_float():
    assert set(F16_FIELDS) == set(BLOCKS)


@pytest.mark.parametrize("qtype", sorted(BLOCKS))
@pytest.mark.parametrize("seed", [0, 1])
def test_random_blocks_bit_exact(qtype, seed):
    raw = _random_blocks(qtype, 3000, seed)
    ref = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[qtype])
    assert _same_bits(dequantize(raw, qtype), ref)


@pytest.mark.parametrize("qtype", sorted(BLOCKS))
def test_row_shaped_blocks_decode_to_the_logical_shape(qtype):
    block, size = BLOCKS[qtype]
    raw = _random_blocks(qtype, 4 * 3, seed=7).reshape(4, 3 * size)  # [rows, row_bytes]
    weight = WeightTensor("w", (4, 3 * block), qtype, raw, decode)
    out = weight.dequantize()
    assert out.shape == (4, 3 * block) and out.dtype == torch.float32
    ref = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[qtype])
    assert ref.shape == (4, 3 * block) and _same_bits(out, ref)


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"])
def test_quantized_gaussian_data_bit_exact(qtype):
    values = np.random.default_rng(3).standard_normal((64, 256)).astype(np.float32)
    raw = gguf.quants.quantize(values, gguf.GGMLQuantizationType[qtype])
    ref = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[qtype])
    assert _same_bits(dequantize(raw, qtype), ref)
    assert np.abs(ref - values).max() < 0.6  # sanity: the data is really the quantized matrix


def test_float_types_bit_exact():
    rng = np.random.default_rng(5)
    values = (rng.standard_normal(4096) * 10).astype(np.float32)
    values[:4] = [0.0, -0.0, np.inf, -np.inf]
    assert _same_bits(dequantize(values, "F32"), values)
    half = values.astype(np.float16)
    assert _same_bits(dequantize(half, "F16"),
                      gguf.quants.dequantize(half.view(np.uint8), gguf.GGMLQuantizationType.F16))
    bf16 = gguf.quants.quantize(values, gguf.GGMLQuantizationType.BF16)  # uint8 bytes
    ref = gguf.quants.dequantize(bf16, gguf.GGMLQuantizationType.BF16)
    assert _same_bits(dequantize(bf16.view(np.uint16), "BF16"), ref)


def test_f32_decode_is_a_copy_not_a_view():
    values = np.ones(8, dtype=np.float32)
    out = dequantize(values, "F32")
    out += 1
    assert values[0] == 1.0


def test_wrong_sizes_are_rejected():
    with pytest.raises(ValueError, match="Q8_0.*34 bytes"):
        dequantize(np.zeros(35, dtype=np.uint8), "Q8_0")
    with pytest.raises(ValueError, match="IQ2_XXS"):
        dequantize(np.zeros(66, dtype=np.uint8), "IQ2_XXS")
