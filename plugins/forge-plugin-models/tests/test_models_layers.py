"""Shared layers: RoPE frequencies equal transformers' (default, linear, llama3, GGUF
rope_freqs), rotary tables grow on demand, RMSNorm and the activations."""

from __future__ import annotations

import pytest
import torch
import transformers
from forge_plugin_models.layers import (
    GatedMLP,
    RotaryTable,
    apply_rope,
    rms_norm,
    rope_inv_freq,
)
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

LLAMA3 = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


def hf_inv_freq(rope: dict) -> torch.Tensor:
    cfg = transformers.LlamaConfig(hidden_size=1024, num_attention_heads=8, rope_parameters=rope)
    kind = rope["rope_type"]
    if kind == "default":
        return 1.0 / (rope["rope_theta"] ** (torch.arange(0, 128, 2, dtype=torch.int64)
                                              .float() / 128))
    return ROPE_INIT_FUNCTIONS[kind](cfg, "cpu")[0]


@pytest.mark.parametrize("rope", [
    {"rope_type": "default", "rope_theta": 10000.0},
    {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0},
    LLAMA3,
])
def test_inv_freq_equals_transformers(rope):
    ours = rope_inv_freq(128, rope["rope_theta"], rope if rope["rope_type"] != "default" else None)
    assert torch.equal(ours, hf_inv_freq(rope))


def test_gguf_rope_freqs_replace_llama3_scaling():
    """llama.cpp stores Llama 3.1 scaling as divisors (``rope_freqs.weight``); applying them must
    give the llama3 frequencies, and must not scale a second time."""
    plain = rope_inv_freq(128, LLAMA3["rope_theta"])
    factors = plain / hf_inv_freq(LLAMA3)
    ours = rope_inv_freq(128, LLAMA3["rope_theta"], LLAMA3, freq_factors=factors)
    torch.testing.assert_close(ours, hf_inv_freq(LLAMA3), rtol=1e-6, atol=0)


def test_unsupported_rope_scaling_is_named():
    with pytest.raises(ValueError, match="unsupported rope scaling type 'yarn'"):
        rope_inv_freq(64, 10000.0, {"rope_type": "yarn", "factor": 2.0})


def test_rotary_table_grows_and_refuses_beyond_context():
    table = RotaryTable(rope_inv_freq(8, 10000.0), max_positions=100, initial=4)
    assert table.cos.shape == (4, 8)
    cos, sin = table.lookup(torch.tensor([0, 57]))
    assert table.cos.shape[0] >= 58 and cos.shape == (2, 1, 8)
    angles = 57 * rope_inv_freq(8, 10000.0)
    torch.testing.assert_close(cos[1, 0], torch.cos(angles).repeat(2))
    torch.testing.assert_close(sin[1, 0], torch.cat([-torch.sin(angles), torch.sin(angles)]))
    with pytest.raises(ValueError, match="position 100 exceeds the model's context length 100"):
        table.lookup(torch.tensor([100]))


def test_apply_rope_is_rotate_half():
    x = torch.randn(3, 2, 8)
    table = RotaryTable(rope_inv_freq(8, 10000.0), max_positions=16)
    cos, sin = table.lookup(torch.tensor([0, 1, 5]))
    angles = torch.tensor([0.0, 1.0, 5.0])[:, None] * rope_inv_freq(8, 10000.0)  # [3, 4]
    full_cos = torch.cat([angles.cos(), angles.cos()], -1)[:, None]
    full_sin = torch.cat([angles.sin(), angles.sin()], -1)[:, None]
    rotated = torch.cat([-x[..., 4:], x[..., :4]], -1)  # transformers' rotate_half
    assert torch.equal(apply_rope(x, cos, sin), x * full_cos + rotated * full_sin)
    assert torch.equal(apply_rope(x[:1], cos[:1], sin[:1]), x[:1])  # position 0 is identity


def test_rms_norm_and_gated_mlp():
    x = torch.tensor([[3.0, 4.0]])
    w = torch.tensor([1.0, 2.0])
    rms = (12.5 + 1e-6) ** 0.5
    torch.testing.assert_close(rms_norm(x, w, 1e-6), torch.tensor([[3 / rms, 8 / rms]]))
    mlp = GatedMLP(lambda t: t, lambda t: 2 * t, lambda t: t + 1, "gelu_tanh")
    torch.testing.assert_close(mlp(x), torch.nn.functional.gelu(x, approximate="tanh") * 2 * x + 1)
    with pytest.raises(ValueError, match="unknown MLP activation 'relu2'"):
        GatedMLP(None, None, None, "relu2")
