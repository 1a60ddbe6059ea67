"""Block formats: our encoder's bytes decode identically through gguf-py's dequantizers and our
own reference decoder, with per-format error bounds; bad input is refused."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
from forge_plugin_ggml_quant import reference
from forge_plugin_ggml_quant.formats import QuantizeError, quantize_rows
from forge_plugin_ggml_quant.mixes import MixPlanner, file_type

MAX_REL_RMSE = {"Q8_0": 0.01, "Q6_K": 0.03, "Q5_K": 0.05, "Q5_1": 0.05, "Q5_0": 0.06,
                "Q4_K": 0.09, "Q4_0": 0.11}
"""Relative RMS error bounds on Gaussian weights (4-bit ~ 0.07-0.09, 8-bit ~ 0.006)."""


def _weights(rows: int = 16, cols: int = 512) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
    x[2, 7] = 0.4  # an outlier
    x[3] = 0.0  # an all-zero row
    return x


@pytest.mark.parametrize("qtype", list(MAX_REL_RMSE))
def test_gguf_dequantizes_our_blocks_like_our_reference(qtype):
    x = _weights()
    q = quantize_rows(x, qtype)
    ours = reference.dequantize(q, qtype)
    theirs = gguf.quants.dequantize(q, gguf.GGMLQuantizationType[qtype]).reshape(-1)
    np.testing.assert_array_equal(ours, theirs)
    err = np.sqrt(np.mean((theirs - x.reshape(-1)) ** 2)) / np.sqrt(np.mean(x**2))
    assert err < MAX_REL_RMSE[qtype]
    assert np.all(theirs.reshape(x.shape)[3] == 0.0)


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q5_0", "Q5_1"])
def test_at_least_as_accurate_as_gguf_py_reference_quantizer(qtype):
    x = _weights()
    t = gguf.GGMLQuantizationType[qtype]
    ours = gguf.quants.dequantize(quantize_rows(x, qtype), t)
    ref = gguf.quants.dequantize(gguf.quants.quantize(x, t), t)
    assert np.sum((ours - x) ** 2) <= np.sum((ref - x) ** 2) * 1.001


@pytest.mark.parametrize("qtype", ["Q4_K", "Q6_K", "Q8_0"])
def test_requantizing_decoded_blocks_stays_close(qtype):
    x = _weights()
    t = gguf.GGMLQuantizationType[qtype]
    once = gguf.quants.dequantize(quantize_rows(x, qtype), t)
    twice = gguf.quants.dequantize(quantize_rows(once, qtype), t)
    # values already on a grid re-encode with much less error than the first pass
    assert np.sqrt(np.mean((twice - once) ** 2)) <= 0.5 * np.sqrt(np.mean((once - x) ** 2))


def test_row_not_multiple_of_block_is_an_error():
    with pytest.raises(QuantizeError, match="not a multiple"):
        quantize_rows(np.zeros((2, 48), np.float32), "Q4_0")
    with pytest.raises(QuantizeError, match="unknown tensor type"):
        quantize_rows(np.zeros((2, 64), np.float32), "Q3_X")


def test_unknown_file_type_lists_choices():
    with pytest.raises(QuantizeError, match="Q4_K_M"):
        file_type("Q7_K")


def test_q4_k_m_mix_matches_llama_cpp_for_gemma_270m_shapes():
    names = ["token_embd.weight"] + [f"blk.{i}.{k}.weight" for i in range(18)
                                     for k in ("attn_v", "ffn_down", "attn_q")]
    p = MixPlanner(file_type("Q4_K_M"), names)
    assert p.choose("token_embd.weight", (262144, 640), "F16") == "Q8_0"  # tied output
    more = [i for i in range(18) if p.choose(f"blk.{i}.ffn_down.weight", (640, 2048), "F16")
            == "Q6_K"]
    assert more == [0, 1, 4, 7, 10, 13, 15, 16, 17]
    assert p.choose("blk.0.attn_v.weight", (256, 640), "F16") == "Q8_0"  # Q6_K fallback
    assert p.choose("blk.2.attn_v.weight", (256, 640), "F16") == "Q5_0"  # Q4_K fallback
    assert p.choose("blk.2.attn_q.weight", (1024, 1024), "F16") == "Q4_K"
    assert p.choose("blk.2.attn_norm.weight", (640,), "F32") == "F32"
