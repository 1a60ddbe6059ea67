"""Weight preparation: every GGUF type becomes the exact ``dequantize().to(dtype)``, chunked
or not, tied weights share one copy, bad input is refused with a clear message."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("gguf")

from forge_plugin_cuda.device_backend import TorchDeviceBackend  # noqa: E402
from forge_plugin_cuda.weights import parse_dtype, row_chunks, to_device_matrix  # noqa: E402

from forge_kernel.testing.conformance.weights import ALL_QTYPES, random_weight  # noqa: E402


@pytest.mark.parametrize("qtype", ALL_QTYPES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_matrix_is_exact_rounding_of_dequantized(qtype, dtype):
    weight = random_weight(qtype, (40, 256), seed=3)
    want = weight.dequantize().to(dtype)
    # 1024 elements per chunk: 4 rows at a time, the last chunk shorter (40 = 9 * 4 + 4)
    assert torch.equal(to_device_matrix(weight, dtype, "cpu", chunk_elements=1024), want)
    assert torch.equal(to_device_matrix(weight, dtype, "cpu"), want)


def test_row_chunks_bound_the_temporary():
    weight = random_weight("Q8_0", (10, 64), seed=1)
    spans = [(b, e, tuple(x.shape)) for b, e, x in row_chunks(weight, chunk_elements=192)]
    assert spans == [(0, 3, (3, 64)), (3, 6, (3, 64)), (6, 9, (3, 64)), (9, 10, (1, 64))]


def test_tied_embedding_and_head_share_storage():
    backend = TorchDeviceBackend("cpu", "bfloat16")
    weight = random_weight("Q4_K", (64, 256), seed=2)
    table, head = backend.embedding(weight), backend.linear(weight)
    assert table.table.data_ptr() == head.weight.data_ptr()
    assert backend.weight_bytes == 64 * 256 * 2


def test_bias_and_dense():
    backend = TorchDeviceBackend("cpu", "float16")
    weight = random_weight("F16", (8, 32), seed=4)
    bias = random_weight("F32", (8,), seed=5, std=1.0, name="x.bias")
    op = backend.linear(weight, bias)
    assert op.bias.dtype == torch.float16
    assert backend.dense(bias).dtype == torch.float32
    with pytest.raises(ValueError, match="expected \\(7,\\)"):
        backend.linear(random_weight("F32", (7, 32), seed=6), bias)


def test_rejects_bad_shapes_and_dtypes():
    with pytest.raises(ValueError, match="must be 2-D"):
        to_device_matrix(random_weight("F32", (32,), seed=0), torch.bfloat16, "cpu")
    with pytest.raises(ValueError, match="unknown compute dtype 'int4'"):
        parse_dtype("int4", torch.bfloat16)
    assert parse_dtype("fp16", torch.bfloat16) is torch.float16
    assert parse_dtype(None, torch.bfloat16) is torch.bfloat16
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        TorchDeviceBackend("cpu", threads=0)
