"""The compiled layer ops (``forge_plugin_cpu.layerops``) against torch formulas: rounding-level
agreement, row (batch) invariance bit for bit, views of fused outputs, and clear errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from forge_plugin_cpu import layerops
from forge_plugin_cpu.backend import CpuBackend

pytestmark = pytest.mark.skipif(not layerops.AVAILABLE, reason="_layerops extension not built")

EPS = 1e-6
TOL = {"rtol": 2e-6, "atol": 2e-6}


@pytest.fixture(scope="module")
def ops():
    return layerops.CpuLayerOps(threads=2)


def gen(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def ref_norm(x, w):
    return F.rms_norm(x, (x.shape[-1],), w, EPS)


def ref_rope(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat((x[..., half:], x[..., :half]), -1) * sin


def rope_rows(rows, hd, seed=9):
    ang = gen(rows, 1, hd // 2, seed=seed) * 3
    cos = torch.cat((ang.cos(), ang.cos()), -1).contiguous()  # [T, 1, hd]
    sin = torch.cat((-ang.sin(), ang.sin()), -1).contiguous()
    return cos, sin


@pytest.mark.parametrize("dim", [640, 37, 8])  # 37, 8: tails shorter than a vector
def test_rms_norm_matches_torch(ops, dim):
    x, w = gen(5, dim), gen(dim, seed=1) + 1
    torch.testing.assert_close(ops.rms_norm(x, w, EPS), ref_norm(x, w), **TOL)
    wide = gen(5, dim + 24, seed=2)[:, 3:3 + dim]  # row-strided view
    torch.testing.assert_close(ops.rms_norm(wide, w, EPS), ref_norm(wide, w), **TOL)


@pytest.mark.parametrize("post", [True, False])
@pytest.mark.parametrize("after", [True, False])
def test_residual_norm_updates_x_in_place(ops, post, after):
    x, y = gen(4, 640), gen(4, 640, seed=1, scale=30)
    yw, w = gen(640, seed=2) + 1, gen(640, seed=3) + 1
    y_before = y.clone()
    want_x = x + (ref_norm(y, yw) if post else y)
    got_x, h = ops.residual_norm(x, y, yw if post else None, w if after else None, EPS)
    assert got_x is x and torch.equal(y, y_before)
    torch.testing.assert_close(got_x, want_x, **TOL)
    if after:
        torch.testing.assert_close(h, ref_norm(want_x, w), **TOL)
    else:
        assert h is None


@pytest.mark.parametrize("heads,kv,hd", [(4, 1, 256), (8, 2, 64), (2, 2, 18)])
@pytest.mark.parametrize("norm", [True, False])
def test_qk_rope_on_views_of_a_fused_output(ops, heads, kv, hd, norm):
    rows = 3
    qkv = gen(rows, (heads + 2 * kv) * hd, scale=5)  # what a fused q/k/v op returns
    q, k, _ = qkv.split([heads * hd, kv * hd, kv * hd], -1)
    q, k = q.view(rows, heads, hd), k.view(rows, kv, hd)
    qw, kw = gen(hd, seed=4) + 1, gen(hd, seed=5) + 1
    cos, sin = rope_rows(rows, hd)
    before = qkv.clone()
    got_q, got_k = ops.qk_rope(q, k, qw if norm else None, kw if norm else None, cos, sin, EPS)
    assert torch.equal(qkv, before)  # inputs are only read
    want_q = ref_rope(ref_norm(q, qw) if norm else q, cos, sin)
    want_k = ref_rope(ref_norm(k, kw) if norm else k, cos, sin)
    torch.testing.assert_close(got_q, want_q, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_k, want_k, rtol=1e-5, atol=1e-5)
    assert got_q.is_contiguous() and got_k.is_contiguous()


@pytest.mark.parametrize("activation,ref", [
    ("silu", F.silu), ("gelu_tanh", lambda g: F.gelu(g, approximate="tanh"))])
@pytest.mark.parametrize("n", [2048, 21])
def test_gated_matches_torch(ops, activation, ref, n):
    gu = gen(6, 2 * n, scale=4)
    gu[0, :8] = torch.tensor([-200.0, -90.0, -30.0, -1e-6, 0.0, 1e-6, 90.0, 200.0])  # extremes
    g, u = gu.split([n, n], -1)  # views of a fused gate/up output
    got = ops.gated(g, u, activation)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref(g) * u, rtol=1e-5, atol=1e-5)


def test_every_row_is_computed_alone(ops):
    """Batch invariance: a row's result is bit-identical whatever else is in the step."""
    rows, hidden, hd = 33, 640, 256
    x, y, w = gen(rows, hidden), gen(rows, hidden, seed=1), gen(hidden, seed=2) + 1
    qkv = gen(rows, 6 * hd, seed=3)
    q, k, _ = qkv.split([4 * hd, hd, hd], -1)
    q, k = q.view(rows, 4, hd), k.view(rows, 1, hd)
    cos, sin = rope_rows(rows, hd)
    g = gen(rows, 2048, seed=5)
    # 1 thread for the single rows, 2 for the batch of 33 (above the parallel threshold)
    one = layerops.CpuLayerOps(threads=1)
    batch = (ops.rms_norm(x, w, EPS), ops.residual_norm(x.clone(), y, w, w, EPS)[1],
             *ops.qk_rope(q, k, w[:hd], w[:hd], cos, sin, EPS), ops.gated(g, g, "gelu_tanh"))
    for t in range(rows):
        s = slice(t, t + 1)
        alone = (one.rms_norm(x[s], w, EPS), one.residual_norm(x[s].clone(), y[s], w, w, EPS)[1],
                 *one.qk_rope(q[s], k[s], w[:hd], w[:hd], cos[s], sin[s], EPS),
                 one.gated(g[s], g[s], "gelu_tanh"))
        assert all(torch.equal(a, b[s]) for a, b in zip(alone, batch, strict=True))


def test_bad_inputs_are_named(ops):
    x, w = gen(2, 16), gen(16)
    with pytest.raises(ValueError, match="float32"):
        ops.rms_norm(x.double(), w, EPS)
    with pytest.raises(ValueError, match="contiguous last axis"):
        ops.rms_norm(x.t(), w, EPS)
    with pytest.raises(ValueError, match=r"norm weight.*\[16\]"):
        ops.rms_norm(x, gen(8), EPS)
    with pytest.raises(ValueError, match="residual"):
        ops.residual_norm(x[:1], x, None, w, EPS)
    with pytest.raises(ValueError, match="activation 'relu'"):
        ops.gated(x, x, "relu")
    cos, sin = rope_rows(2, 16)
    with pytest.raises(ValueError, match="cos and sin"):
        ops.qk_rope(x.view(2, 1, 16), x.view(2, 1, 16), None, None, cos[:1], sin, EPS)


def test_only_int8_precision_uses_them():
    assert isinstance(CpuBackend(threads=1, precision="int8").layer_ops, layerops.CpuLayerOps)
    exact = CpuBackend(threads=1, precision="exact")
    assert exact.layer_ops is None and "fused C" not in exact.describe()


def test_without_the_extension_the_backend_offers_none(monkeypatch):
    monkeypatch.setattr(layerops, "AVAILABLE", False)
    assert CpuBackend(threads=1, precision="int8").layer_ops is None
