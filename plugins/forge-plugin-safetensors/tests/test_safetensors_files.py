"""The safetensors reader, names and config mapping, on files written in the tests."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from forge_plugin_safetensors.files import checkpoint_files, read_safetensors
from forge_plugin_safetensors.hf_config import model_config, text_config
from forge_plugin_safetensors.names import canonical_name, is_gemma_norm
from safetensors.numpy import save_file

from forge_kernel.errors import ModelFormatError


def test_reads_f32_f16_and_bf16_zero_copy(tmp_path):
    import torch
    from safetensors.torch import save_file as save_torch

    values = torch.linspace(-2, 2, 12).reshape(3, 4)
    path = tmp_path / "w.safetensors"
    save_torch({"a": values, "b": values.half(), "c": values.bfloat16()}, str(path))
    stored = {t.name: t for t in read_safetensors(path)}
    assert {n: t.qtype for n, t in stored.items()} == {"a": "F32", "b": "F16", "c": "BF16"}
    assert all(t.shape == (3, 4) for t in stored.values())
    assert isinstance(stored["a"].data.base, np.memmap | np.ndarray)
    np.testing.assert_array_equal(stored["a"].data, values.numpy())
    np.testing.assert_array_equal(stored["b"].data.astype(np.float32),
                                  values.half().float().numpy())
    bf16 = (stored["c"].data.astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(bf16, values.bfloat16().float().numpy())


def test_truncated_file_names_the_tensor(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"big": np.ones((64, 64), np.float32)}, str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelFormatError, match="truncated file: tensor 'big'") as info:
        read_safetensors(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content, reason", [
    (b"\x01", "no safetensors header"),
    (struct.pack("<Q", 5) + b"nope!", "header is not JSON"),
    (struct.pack("<Q", 10**12) + b"{}", "not a safetensors file or truncated"),
    (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
])
def test_not_a_safetensors_file(tmp_path, content, reason):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFormatError, match=reason):
        read_safetensors(path)


def test_unsupported_dtype_and_wrong_byte_count(tmp_path):
    path = tmp_path / "i.safetensors"
    save_file({"ids": np.arange(4, dtype=np.int64)}, str(path))
    with pytest.raises(ModelFormatError, match="dtype I64, which forge cannot read"):
        read_safetensors(path)
    header = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    with pytest.raises(ModelFormatError, match=r"8 bytes for shape \(4,\)"):
        read_safetensors(path)


def test_shard_index_order_and_missing_shard(tmp_path):
    for name in ("b.safetensors", "a.safetensors"):
        save_file({name[0]: np.zeros(2, np.float32)}, str(tmp_path / name))
    index = {"weight_map": {"x": "b.safetensors", "y": "a.safetensors", "z": "b.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert [f.name for f in checkpoint_files(tmp_path)] == ["b.safetensors", "a.safetensors"]
    index["weight_map"]["w"] = "c.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelFormatError, match="shard.*missing.*c.safetensors"):
        checkpoint_files(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelFormatError, match=r"no \*.safetensors weight files"):
        checkpoint_files(empty)


def test_canonical_names_follow_llama_cpp():
    assert canonical_name("model.embed_tokens.weight", "llama", 2) == "token_embd.weight"
    assert canonical_name("model.layers.1.self_attn.q_proj.weight", "llama", 2) == \
        "blk.1.attn_q.weight"
    # the same HF name means different things in Llama and Gemma 3
    assert canonical_name("model.layers.0.post_attention_layernorm.weight", "llama", 2) == \
        "blk.0.ffn_norm.weight"
    assert canonical_name("model.layers.0.post_attention_layernorm.weight", "gemma3", 2) == \
        "blk.0.post_attention_norm.weight"
    assert canonical_name("model.language_model.norm.weight", "gemma3", 2) == \
        "output_norm.weight"
    assert canonical_name("model.vision_tower.encoder.weight", "gemma3", 2) is None
    assert canonical_name("model.layers.0.self_attn.rotary_emb.inv_freq", "llama", 2) is None
    assert is_gemma_norm("blk.0.attn_q_norm.weight", "gemma3_text")
    assert not is_gemma_norm("blk.0.attn_norm.weight", "llama")


BASE = dict(model_type="llama", hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
            intermediate_size=96, vocab_size=300)


def test_config_reads_both_rope_spellings(tmp_path):
    old = model_config(tmp_path, {**BASE, "rope_theta": 5e5, "rope_scaling": {
        "type": "linear", "factor": 2.0}}, has_output=True)
    new = model_config(tmp_path, {**BASE, "rope_parameters": {
        "rope_type": "linear", "rope_theta": 5e5, "factor": 2.0}}, has_output=True)
    for cfg in (old, new):
        assert cfg.rope_theta == 5e5
        assert cfg.rope_scaling == {"rope_type": "linear", "factor": 2.0}
        assert (cfg.num_kv_heads, cfg.head_dim, cfg.tie_word_embeddings) == (4, 16, False)


def test_gemma3_nested_text_config_and_layer_types(tmp_path):
    raw = text_config({"model_type": "gemma3", "tie_word_embeddings": True, "text_config": {
        **BASE, "model_type": "gemma3_text", "num_hidden_layers": 6, "sliding_window": 512,
        "rope_local_base_freq": 10000.0, "rope_theta": 1e6}})
    cfg = model_config(tmp_path, raw, has_output=False)
    assert cfg.architecture == "gemma3_text" and cfg.tie_word_embeddings
    assert cfg.extra["layer_types"] == ["sliding"] * 5 + ["full"]
    assert (cfg.rope_theta, cfg.extra["rope_local_theta"]) == (1e6, 10000.0)


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ModelFormatError, match="unknown model_type 'gpt2'"):
        model_config(tmp_path, {**BASE, "model_type": "gpt2"}, has_output=True)
    with pytest.raises(ModelFormatError, match="'vocab_size' is missing"):
        model_config(tmp_path, {k: v for k, v in BASE.items() if k != "vocab_size"}, True)
