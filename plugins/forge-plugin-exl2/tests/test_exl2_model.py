"""Whole-model conversions of tiny random transformers models (Gemma 3, Llama, Qwen2 with
q/k/v biases): the written directory, the loader, logits against the float32 original, bad
input and atomic output.

Tolerance (relative L2 error of the last-token logits vs transformers' float32 model, on
held-out text): at 8 bpw measured 0.02-0.06, at 4 bpw 0.28-0.56 on these tiny models (64-wide
layers, randomised norms; EXL2's 4-bit scales cost ~1% weight error even at 8 bits). We assert
<= 0.12 at 8 bpw and that 8 bpw is at least 3x closer than 4 bpw: a wrong permutation, scale or
bit layout gives errors of order 1.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import held_out_ids
from forge_plugin_exl2.convert import LINEARS
from forge_plugin_exl2.quantizer import Exl2Error, Exl2Quantizer, convert_model

from forge_kernel.modeling import build_causal_lm, open_model_source
from forge_kernel.plugins import get_host
from forge_kernel.testing.conformance.model_architecture import naive_cache_factory, prefill


@pytest.fixture(scope="module")
def backend():
    return get_host().registry.create("backend", "cpu", threads=1, precision="exact")


def _rel_errors(hf, out_dir, backend):
    source = open_model_source(out_dir)
    model = build_causal_lm(source, backend)
    make_cache = naive_cache_factory(model)
    errors = []
    for ids in held_out_ids(source.tokenizer):
        with torch.no_grad():
            ref = hf(torch.tensor([ids])).logits[0, -1]
        got = prefill(model, make_cache(), ids)
        errors.append(float((got - ref).norm() / ref.norm()))
    return max(errors)


@pytest.mark.parametrize("case", ["gemma3", "llama", "qwen2"])
def test_logits_close_to_float32(case, tiny_dirs, tiny_exl2, backend):
    hf, _ = tiny_dirs[case]
    e8 = _rel_errors(hf, tiny_exl2(case, 8.0), backend)
    e4 = _rel_errors(hf, tiny_exl2(case, 4.0), backend)
    assert e8 <= 0.12, e8
    assert e8 * 3 <= e4, (e8, e4)


def test_directory_is_an_exl2_hf_dir(tiny_dirs, tiny_exl2):
    out = tiny_exl2("qwen2", 4.0)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json", "measurement.json"} <= names
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "qwen2"
    assert config["quantization_config"]["quant_method"] == "exl2"
    assert config["quantization_config"]["bits"] == 4.0
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), framework="numpy") as fh:
        keys = set(fh.keys())
        assert fh.get_tensor("model.layers.0.self_attn.q_proj.q_weight").dtype.name == "int32"
        assert fh.get_tensor("model.layers.0.self_attn.q_proj.q_groups").dtype.name == "int16"
    for suffix in ("q_weight", "q_scale", "q_scale_max", "q_groups", "q_invperm"):
        assert f"model.layers.2.mlp.down_proj.{suffix}" in keys
    assert "model.layers.0.self_attn.q_proj.bias" in keys  # Qwen2's biases stay float
    assert "model.embed_tokens.weight" in keys and not any(k.endswith(".weight") and "proj" in k
                                                           for k in keys)


def test_loader_round_trips_config_and_tokenizer(tiny_dirs, tiny_exl2):
    src = open_model_source(tiny_dirs["gemma3"][1])
    out = open_model_source(tiny_exl2("gemma3", 8.0))
    assert out.format == "exl2"
    assert out.config == src.config
    assert set(out.tensors) == set(src.tensors)
    assert {n for n, t in out.tensors.items() if t.qtype == "EXL2"} == {
        n for n in src.tensors if any(n.endswith(f".{k}.weight") for k in LINEARS)}
    text = "hello world, def f(x): return x + 1"
    assert out.tokenizer.encode(text) == src.tokenizer.encode(text)
    assert out.tokenizer.eos_ids == src.tokenizer.eos_ids
    assert out.metadata["quantization"]["EXL2"]["count"] == 21
    measured = json.loads((tiny_exl2("gemma3", 8.0) / "measurement.json").read_text())
    assert len(measured["layers"]) == 21


def test_achieved_bpw_meets_target(tiny_dirs, tmp_path):
    # 64-wide toy layers: q_invperm and scales alone cost ~1.4 bpw, so the ladder starts at 3.5
    summary = convert_model(tiny_dirs["llama"][1], tmp_path / "o", bpw=5.0, max_windows=2,
                            ctx=128)
    assert 4.5 <= summary.bpw <= 5.0
    assert summary.layers == 21 and summary.output.is_dir()


@pytest.mark.parametrize("bpw", [1.5, 8.5, "four"])
def test_bpw_out_of_range(bpw, tiny_dirs, tmp_path):
    with pytest.raises(Exl2Error, match="--bpw"):
        Exl2Quantizer().quantize(tiny_dirs["llama"][1], tmp_path / "o", bpw=bpw)
    assert not (tmp_path / "o").exists()


def test_unsupported_source(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a model")
    with pytest.raises(Exl2Error, match="unsupported source"):
        Exl2Quantizer().quantize(bad, tmp_path / "o", bpw=4.0)
    with pytest.raises(Exl2Error, match="unsupported source"):
        Exl2Quantizer().quantize(tmp_path / "missing", tmp_path / "o", bpw=4.0)


def test_calibration_text_problems(tiny_dirs, tmp_path):
    src = tiny_dirs["llama"][1]
    with pytest.raises(Exl2Error, match="does not exist"):
        Exl2Quantizer().quantize(src, tmp_path / "o", bpw=4.0, calibration=tmp_path / "nope")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(Exl2Error, match="is empty"):
        Exl2Quantizer().quantize(src, tmp_path / "o", bpw=4.0, calibration=empty)
    short = tmp_path / "short.txt"
    short.write_text("just a few words")
    with pytest.raises(Exl2Error, match="too short"):
        Exl2Quantizer().quantize(src, tmp_path / "o", bpw=4.0, calibration=short)
    assert not (tmp_path / "o").exists()


def test_unsupported_option_and_type(tiny_dirs, tmp_path):
    from forge_kernel.interfaces.quantizer import QuantizerOptionError

    with pytest.raises(QuantizerOptionError, match="imatrix"):
        Exl2Quantizer().quantize(tiny_dirs["llama"][1], tmp_path / "o", imatrix="x.dat")
    with pytest.raises(Exl2Error, match="unknown type 'Q4_K_M'"):
        Exl2Quantizer().quantize(tiny_dirs["llama"][1], tmp_path / "o", qtype="Q4_K_M")


def test_output_is_atomic(tiny_dirs, tmp_path, monkeypatch):
    from forge_plugin_exl2 import writer

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "save_tensors", boom)
    with pytest.raises(KeyboardInterrupt):
        convert_model(tiny_dirs["llama"][1], tmp_path / "o", bpw=4.0, max_windows=1, ctx=128)
    assert list(tmp_path.iterdir()) == []  # neither the output nor the temporary
    (tmp_path / "taken").mkdir()
    with pytest.raises(Exl2Error, match="already exists"):
        convert_model(tiny_dirs["llama"][1], tmp_path / "taken", bpw=4.0)


def test_registered_through_hooks(tiny_exl2):
    registry = get_host().registry
    assert "exl2" in registry.names("quantizer")
    loader = registry.create("weight_loader", "exl2")
    assert loader.can_load(tiny_exl2("llama", 4.0))
    assert not loader.can_load(tiny_exl2("llama", 4.0) / "config.json")
