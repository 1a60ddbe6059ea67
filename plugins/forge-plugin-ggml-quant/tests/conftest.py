"""A tiny random Llama with 256-wide rows (every k-quant applies), saved as safetensors."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory):
    import torch
    import transformers
    from forge_plugin_models.testing import save_safetensors

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=300, hidden_size=256, intermediate_size=512,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=128,
                                   tie_word_embeddings=False)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    return save_safetensors(model, tmp_path_factory.mktemp("tiny") / "llama"), model
