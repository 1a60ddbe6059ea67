"""Canonical (GGUF-style) tensor names -> Hugging Face names, the ones exllamav2 keys its
tensors by (``model.layers.0.self_attn.q_proj.q_weight``). The inverse is forge-plugin-
safetensors' ``canonical_name`` (gguf-py's table), which the writer checks every name against.
"""

from __future__ import annotations

import re

_GLOBAL = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_LAYER = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
    "post_ffw_norm": "post_feedforward_layernorm",
}
_LLAMA_FFN_NORM = "post_attention_layernorm"  # Llama/Qwen: the pre-MLP norm
_GEMMA = {"ffn_norm": "pre_feedforward_layernorm",
          "post_attention_norm": "post_attention_layernorm"}
_BLK = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")


def hf_name(name: str, architecture: str) -> str:
    """The Hugging Face name of canonical tensor ``name``; ``KeyError`` for unknown names."""
    base, _, suffix = name.rpartition(".")
    if base in _GLOBAL:
        return f"{_GLOBAL[base]}.{suffix}"
    m = _BLK.match(name)
    if m is None:
        raise KeyError(name)
    layer, kind, suffix = m.groups()
    gemma = architecture.startswith("gemma3")
    table = {**_LAYER, **(_GEMMA if gemma else {"ffn_norm": _LLAMA_FFN_NORM})}
    return f"model.layers.{layer}.{table[kind]}.{suffix}"


def hf_prefix(weight_name: str, architecture: str) -> str:
    """The module prefix of a linear weight (``model.layers.0.mlp.up_proj``)."""
    return hf_name(weight_name, architecture).removesuffix(".weight")
