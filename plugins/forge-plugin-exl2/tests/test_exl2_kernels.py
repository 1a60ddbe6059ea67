"""GPTQ, scales, packing and the bit allocator on small synthetic layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from forge_plugin_exl2 import gptq
from forge_plugin_exl2.optimize import LayerOptions, allocate
from forge_plugin_exl2.pack import (
    Exl2FormatError,
    pack_bits,
    pack_linear,
    unpack_bits,
    unpack_linear,
)
from forge_plugin_exl2.qparams import CANDIDATES, QParams, qp


def _layer(seed: int = 0, inputs: int = 128, outputs: int = 64, tokens: int = 2048):
    """A layer with correlated, unevenly scaled inputs (like real activations)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(inputs, inputs, generator=g) / inputs**0.5
    x = torch.randn(tokens, inputs, generator=g) @ mix
    x *= torch.rand(inputs, generator=g) * 3 + 0.1
    h = x.T @ x / tokens
    w = torch.randn(outputs, inputs, generator=g) * 0.05
    return x, h, w


@pytest.mark.parametrize("params", [qp(64, (4,)), qp(64, (3,)), qp(32, (4, 3), (0.25, 0.75))])
def test_gptq_reduces_hessian_weighted_error_vs_rtn(params):
    x, h, w = _layer()
    prep = gptq.prepare_hessian(h)
    rtn = gptq.quantize(w, prep, params, gptq=False)
    opt = gptq.quantize(w, prep, params, gptq=True)
    e_rtn, energy = gptq.hessian_error(w, rtn, prep)
    e_opt, _ = gptq.hessian_error(w, opt, prep)
    # the error is the summed squared output error over the calibration tokens
    direct = float(((x @ (w - opt.weight()).T) ** 2).sum() / x.shape[0])
    assert e_opt == pytest.approx(direct, rel=1e-3)
    assert e_opt < 0.8 * e_rtn, (e_opt, e_rtn)  # measured ~0.4-0.6x on this layer
    assert 0 < e_opt / energy < 0.05


def test_act_order_puts_most_active_inputs_first():
    _, h, _ = _layer()
    prep = gptq.prepare_hessian(h)
    d = torch.diagonal(h)[prep.perm]
    assert bool((d[:-1] >= d[1:]).all())
    assert torch.equal(gptq.prepare_hessian(h, act_order=False).perm, torch.arange(h.shape[0]))


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 8])
def test_pack_bits_round_trip(bits):
    rng = np.random.default_rng(bits)
    levels = rng.integers(0, 2**bits, (96, 40))
    packed = pack_bits(levels, bits)
    assert packed.dtype == np.int32 and packed.shape == (96 * bits // 32, 40)
    assert np.array_equal(unpack_bits(packed, bits), levels)


def test_pack_bits_layout_is_little_endian_stream():
    levels = np.arange(32).reshape(32, 1) % 8  # 3-bit values 0..7
    words = pack_bits(levels, 3).view(np.uint32)[:, 0]
    stream = sum(int(v) << (3 * i) for i, v in enumerate(levels[:, 0]))
    assert [int(wd) for wd in words] == [(stream >> (32 * k)) & 0xFFFFFFFF for k in range(3)]
    with pytest.raises(Exl2FormatError, match="multiple of 32"):
        pack_bits(np.zeros((20, 4), dtype=np.int64), 4)


@pytest.mark.parametrize("params", CANDIDATES, ids=lambda p: p.desc)
def test_linear_pack_unpack_exact_and_sizes_counted(params):
    _, h, w = _layer(seed=3, inputs=256, outputs=48)
    q = gptq.quantize(w, gptq.prepare_hessian(h), params)
    tensors = pack_linear("model.layers.0.mlp.up_proj", q)
    assert {k.rsplit(".", 1)[1] for k in tensors} == {"q_weight", "q_scale", "q_scale_max",
                                                       "q_groups", "q_invperm"}
    back = unpack_linear("model.layers.0.mlp.up_proj", tensors)
    assert np.array_equal(back, q.weight().numpy())  # bit-exact decode
    stored_bits = sum(v.nbytes * 8 for v in tensors.values())
    assert stored_bits == params.total_bits(256, 48)
    groups = tensors["model.layers.0.mlp.up_proj.q_groups"].reshape(-1, 2)
    assert list(groups[:, 0]) == sorted(groups[:, 0], reverse=True)  # most bits first


def test_unpack_rejects_inconsistent_tensors():
    _, h, w = _layer(inputs=64, outputs=16)
    tensors = pack_linear("p", gptq.quantize(w, gptq.prepare_hessian(h), qp(32, (4,))))
    del tensors["p.q_scale_max"]
    with pytest.raises(Exl2FormatError, match="q_scale_max"):
        unpack_linear("p", tensors)


def test_qparams_validation():
    with pytest.raises(ValueError, match="most bits first"):
        QParams((64, 64), (3, 4), (0.5, 0.5))
    with pytest.raises(ValueError, match="sum to 1"):
        QParams((64,), (4,), (0.5,))
    assert qp(128, (4,)).groups(640) == [(4, 128)] * 5
    assert sum(n for _, n in qp(128, (5, 4), (0.1, 0.9)).groups(640)) == 640


def _options(name, numel, scale):
    """A layer whose errors are ``scale`` times a generic error-vs-bits curve."""
    bits = [int(b * numel) for b in (2.2, 3.1, 4.05, 5.05, 6.05, 8.05)]
    return LayerOptions(name, numel, bits, [scale * 4.0 ** -b for b in (2.2, 3.1, 4.05,
                                                                         5.05, 6.05, 8.05)])


@pytest.mark.parametrize("bpw", [2.5, 3.3, 4.0, 5.0, 7.0])
def test_allocator_meets_budget(bpw):
    layers = [_options(f"l{i}", 1000 * (1 + i % 3), 1.0 + i) for i in range(12)]
    choice = allocate(layers, bpw)
    total = sum(lo.bits[c] for lo, c in zip(layers, choice, strict=True))
    numel = sum(lo.numel for lo in layers)
    assert total <= bpw * numel
    assert total >= (bpw - 1.0) * numel  # and uses most of it


def test_allocator_prefers_sensitive_layers():
    layers = [_options("robust", 4000, 1.0), _options("sensitive", 4000, 100.0)]
    robust, sensitive = allocate(layers, 4.6)
    assert layers[1].bits[sensitive] > layers[0].bits[robust]


def test_allocator_minimises_total_error_on_a_small_case():
    import itertools

    layers = [_options("a", 1000, 1.0), _options("b", 3000, 7.0), _options("c", 2000, 30.0)]
    budget = 4.0 * 6000
    best = min((sum(lo.error[c] for lo, c in zip(layers, combo, strict=True)), combo)
               for combo in itertools.product(range(6), repeat=3)
               if sum(lo.bits[c] for lo, c in zip(layers, combo, strict=True)) <= budget)
    got = allocate(layers, 4.0)
    err = sum(lo.error[c] for lo, c in zip(layers, got, strict=True))
    assert err <= best[0] * 1.25  # Lagrangian + greedy: close to the exhaustive optimum


def test_allocator_refuses_impossible_budget():
    with pytest.raises(ValueError, match="below the smallest"):
        allocate([_options("a", 1000, 1.0)], 1.5)
