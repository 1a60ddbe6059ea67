"""A tiny random Llama (rows of 256 so every k-quant applies) saved as safetensors, quantized to
each file type: transformers' GGUF loader runs the file and its logits stay within a per-type
tolerance of the float32 model's. Failures leave no file behind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from forge_plugin_ggml_quant.convert import quantize_file  # noqa: E402
from forge_plugin_ggml_quant.formats import QuantizeError  # noqa: E402
from forge_plugin_ggml_quant.quantizer import GGMLQuantizer  # noqa: E402

from forge_kernel.testing.conformance.quantizer import QuantizerConformance  # noqa: E402

TOLERANCE = {"F32": 1e-4, "F16": 0.01, "Q8_0": 0.03, "Q6_K": 0.06, "Q5_K_M": 0.12,
             "Q4_K_M": 0.3, "Q5_0": 0.2, "Q4_0": 0.35, "Q4_K": 0.3, "Q5_K": 0.2}
"""Max |logit difference| / max |logit| on the test prompt."""
IDS = [1, 17, 42, 5, 99, 230, 7, 64, 3]


def _logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


@pytest.mark.parametrize("qtype", list(TOLERANCE))
def test_quantized_logits_close_to_f32(hf_dir, tmp_path, qtype):
    directory, model = hf_dir
    out = tmp_path / f"tiny-{qtype}.gguf"
    summary = quantize_file(directory, out, qtype)
    assert summary.output_bytes == out.stat().st_size
    loaded = transformers.AutoModelForCausalLM.from_pretrained(
        str(tmp_path), gguf_file=out.name, dtype=torch.float32).eval()
    ref, got = _logits(model, IDS), _logits(loaded, IDS)
    err = float((got - ref).abs().max() / ref.abs().max())
    assert err < TOLERANCE[qtype], f"{qtype}: {err:.4f}"
    if qtype == "Q4_K_M":
        assert summary.types.get("Q6_K", 0) > 0 and summary.types.get("Q4_K", 0) > 0


def test_requantizing_a_gguf_keeps_metadata(hf_dir, tmp_path):
    import gguf

    directory, _ = hf_dir
    first = quantize_file(directory, tmp_path / "a.gguf", "Q8_0").output
    second = quantize_file(first, tmp_path / "b.gguf", "Q4_K_M").output
    a, b = gguf.GGUFReader(first), gguf.GGUFReader(second)
    assert b.fields["general.file_type"].contents() == 15
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "llama.block_count"):
        assert a.fields[key].contents() == b.fields[key].contents()


def test_bad_sources_leave_nothing(tmp_path):
    bogus = tmp_path / "model.bin"
    bogus.write_bytes(b"not a model")
    with pytest.raises(QuantizeError, match="unsupported source"):
        quantize_file(bogus, tmp_path / "out.gguf", "Q8_0")
    with pytest.raises(QuantizeError, match="unknown --type"):
        quantize_file(bogus, tmp_path / "out.gguf", "Q9_9")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]


def test_interrupted_run_leaves_no_file(hf_dir, tmp_path, monkeypatch):
    directory, _ = hf_dir

    def stop(done, total, name):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        quantize_file(directory, tmp_path / "out.gguf", "Q4_K_M", progress=stop)
    assert list(tmp_path.iterdir()) == []


class TestConformance(QuantizerConformance):
    @pytest.fixture()
    def quantizer(self):
        q = GGMLQuantizer()
        q.types = ("Q8_0", "Q4_K_M")  # the whole list is covered above
        return q

    @pytest.fixture()
    def source(self, hf_dir):
        return hf_dir[0]

    def check_output(self, path, qtype):
        import gguf

        assert np.isfinite(len(gguf.GGUFReader(path).tensors))
