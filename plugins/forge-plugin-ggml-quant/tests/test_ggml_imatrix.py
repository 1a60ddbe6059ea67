"""Importance matrices: weighting the scale search by per-column importance changes the
encoding and lowers the importance-weighted error (what llama.cpp's imatrix optimizes);
llama.cpp's GGUF and legacy .dat imatrix files round-trip; bad files are clear errors."""

from __future__ import annotations

import struct

import gguf
import numpy as np
import pytest
from forge_plugin_ggml_quant.formats import QuantizeError, quantize_rows
from forge_plugin_ggml_quant.imatrix import load_imatrix, resolve_importance, save_imatrix


def _dequant(data: np.ndarray, qtype: str, shape) -> np.ndarray:
    return gguf.quants.dequantize(data, gguf.GGMLQuantizationType[qtype]).reshape(shape)


@pytest.mark.parametrize("qtype", ["Q4_K", "Q5_K", "Q6_K", "Q4_0", "Q5_0"])
def test_imatrix_changes_the_choice_and_lowers_weighted_error(qtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((48, 512)).astype(np.float32)
    importance = np.exp(2.0 * rng.standard_normal(512)).astype(np.float32)  # spans ~e^+-6
    plain = quantize_rows(x, qtype)
    weighted = quantize_rows(x, qtype, importance)
    assert not np.array_equal(plain, weighted)

    def err(data):
        return float(np.sum(importance[None, :] * (x - _dequant(data, qtype, x.shape)) ** 2))

    # measured: 10-35% lower; a weighting that did nothing useful would not be below
    assert err(weighted) < 0.95 * err(plain), (err(weighted), err(plain))


def test_gguf_imatrix_round_trip(tmp_path):
    sums = {"blk.0.attn_q.weight": np.arange(1, 9, dtype=np.float64) * 10.0,
            "blk.0.ffn_down.weight": np.full(16, 6.0)}
    counts = {"blk.0.attn_q.weight": 10, "blk.0.ffn_down.weight": 3}
    path = save_imatrix(tmp_path / "imatrix.gguf", sums, counts, "text.txt", 4, 512)
    reader = gguf.GGUFReader(path)
    assert reader.fields["general.type"].contents() == "imatrix"
    assert reader.fields["imatrix.chunk_size"].contents() == 512
    loaded = load_imatrix(path)
    np.testing.assert_allclose(loaded["blk.0.attn_q.weight"], np.arange(1, 9))
    np.testing.assert_allclose(loaded["blk.0.ffn_down.weight"], np.full(16, 2.0))
    assert [p.name for p in tmp_path.iterdir()] == ["imatrix.gguf"]


def test_legacy_dat_imatrix_is_read(tmp_path):
    name = b"blk.3.attn_v.weight"
    values = np.array([4.0, 8.0, 12.0], np.float32)
    blob = struct.pack("<i", 1) + struct.pack("<i", len(name)) + name
    blob += struct.pack("<ii", 4, 3) + values.tobytes() + struct.pack("<i", 10)
    blob += struct.pack("<i", 4) + b"data"
    (tmp_path / "old.dat").write_bytes(blob)
    loaded = load_imatrix(tmp_path / "old.dat")
    np.testing.assert_allclose(loaded["blk.3.attn_v.weight"], [1.0, 2.0, 3.0])


def test_bad_imatrix_input_is_a_clear_error(tmp_path):
    with pytest.raises(QuantizeError, match="does not exist"):
        load_imatrix(tmp_path / "none.dat")
    (tmp_path / "junk.dat").write_bytes(b"\x05\x00\x00\x00abc")
    with pytest.raises(QuantizeError, match="not a readable imatrix"):
        load_imatrix(tmp_path / "junk.dat")
    with pytest.raises(QuantizeError, match="not both"):
        resolve_importance(tmp_path, imatrix=tmp_path / "a", calibration=tmp_path / "b")
    x = np.ones((2, 64), np.float32)
    with pytest.raises(QuantizeError, match="importance vector has"):
        quantize_rows(x, "Q4_0", np.ones(32, np.float32))
