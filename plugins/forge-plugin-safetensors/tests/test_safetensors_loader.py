"""The loader on real transformers checkpoints written in the tests (tiny random Llama, Gemma 3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers
from forge_plugin_safetensors.loader import SafetensorsLoader

from forge_kernel.errors import ModelFormatError

CORPUS = ["the quick brown fox jumps over the lazy dog", "hello world, hello forge"] * 8


def save(model, directory, dtype=torch.float32):
    from tokenizers import ByteLevelBPETokenizer

    model.to(dtype).save_pretrained(directory, safe_serialization=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=model.config.vocab_size, min_frequency=1,
                            special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer,
                                                unk_token="<unk>", bos_token="<s>",
                                                eos_token="</s>")
    fast.save_pretrained(directory)
    return directory


def tiny(cls, **overrides):
    torch.manual_seed(0)
    config = cls(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, **overrides)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("dtype, qtype", [(torch.float32, "F32"), (torch.bfloat16, "BF16"),
                                          (torch.float16, "F16")])
def test_llama_tensors_keep_their_dtype_and_values(tmp_path, dtype, qtype):
    model = tiny(transformers.LlamaConfig, tie_word_embeddings=False)
    directory = save(model, tmp_path / "llama", dtype)
    loader = SafetensorsLoader()
    assert loader.can_load(directory) and not loader.can_load(tmp_path / "nothing")
    source = loader.load(directory)
    assert source.config.architecture == "llama" and not source.config.tie_word_embeddings
    state = model.state_dict()
    q = source.tensors["blk.1.attn_q.weight"]
    assert q.qtype == qtype and q.shape == (64, 64)
    assert torch.equal(q.dequantize(), state["model.layers.1.self_attn.q_proj.weight"].float())
    assert torch.equal(source.tensors["output.weight"].dequantize(),
                       state["lm_head.weight"].float())
    assert source.metadata["parameters"] == sum(int(np.prod(t.shape))
                                                for t in source.tensors.values())
    assert source.tokenizer.encode("hello world")


def test_gemma3_norms_get_plus_one_and_tied_head_is_dropped(tmp_path):
    model = tiny(transformers.Gemma3TextConfig, head_dim=16, sliding_window=4,
                 tie_word_embeddings=True)
    directory = save(model, tmp_path / "gemma")
    source = SafetensorsLoader().load(directory)
    assert source.config.tie_word_embeddings and "output.weight" not in source.tensors
    norm = model.state_dict()["model.layers.0.input_layernorm.weight"]
    assert torch.equal(source.tensors["blk.0.attn_norm.weight"].dequantize(), norm + 1)


def test_errors_name_the_file_and_problem(tmp_path):
    loader = SafetensorsLoader()
    with pytest.raises(ModelFormatError, match="not a model directory"):
        loader.load(tmp_path / "missing")
    directory = save(tiny(transformers.LlamaConfig), tmp_path / "m")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(ModelFormatError, match="unknown model_type 'bert'"):
        loader.load(directory)
    (directory / "config.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match="config.json.*invalid JSON"):
        loader.load(directory)
    (directory / "config.json").unlink()
    with pytest.raises(ModelFormatError, match="no config.json"):
        loader.load(directory)
