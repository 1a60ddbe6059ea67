"""The ggml activation rounding: Q8_0 equals gguf-py's own Q8_0 round trip bit for bit, Q8_K
keeps llama.cpp's signed-max scale; on a quantized tiny GGUF the ggml mode wraps every matrix
product and moves perplexity only by rounding noise."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
from conftest import TEXT
from forge_plugin_eval import load_model, perplexity
from forge_plugin_eval.numerics import _q8_0, _q8_k, rounding_for


def test_q8_0_matches_gguf_py():
    x = np.random.default_rng(1).standard_normal((6, 128)).astype(np.float32) * 3
    x[0, :32] = 0.0  # an all-zero block stays zero
    q = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0)
    ref = gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0).reshape(x.shape)
    np.testing.assert_array_equal(_q8_0(torch.from_numpy(x)).numpy(), ref)


def test_q8_k_scale_maps_the_signed_max_to_minus_127():
    x = torch.randn(3, 512) * 2
    x[1, 7] = -50.0
    y = _q8_k(x)
    blocks, rounded = x.reshape(3, 2, 256), y.reshape(3, 2, 256)
    idx = blocks.abs().argmax(-1, keepdim=True)
    d = blocks.gather(-1, idx) / -127.0
    levels = rounded / d
    torch.testing.assert_close(levels, levels.round(), atol=1e-3, rtol=0)
    assert levels.max() <= 127.001 and levels.min() >= -127.001
    assert float(y[1, 7]) == pytest.approx(-50.0)
    assert rounding_for("Q4_K", 640) is None and rounding_for("Q4_K", 512) is _q8_k
    assert rounding_for("F32", 64) is None


def test_ggml_mode_on_a_quantized_gguf(tmp_path):
    from forge_plugin_models.testing import make_hf, write_gguf

    path = write_gguf(make_hf("llama", seed=2), tmp_path / "tiny.gguf", "Q8_0")
    text = tmp_path / "t.txt"
    text.write_text(TEXT * 2)
    assert load_model(path, activations="ggml").activations == "ggml"
    exact = perplexity(path, text, ctx=64, activations="fp32")
    ggml = perplexity(path, text, ctx=64, activations="ggml")
    assert (exact.activations, ggml.activations) == ("fp32", "ggml")
    assert ggml.ppl != exact.ppl
    assert ggml.ppl == pytest.approx(exact.ppl, rel=0.02)
