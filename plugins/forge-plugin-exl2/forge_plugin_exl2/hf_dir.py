"""The non-tensor files of the output directory, so it is a Hugging Face-style model dir:
``config.json`` (with exllamav2's ``quantization_config``), ``generation_config.json`` and the
tokenizer files. Written from forge's :class:`ModelConfig` and tokenizer, so a GGUF source (which
has no such files) gets them too; forge-plugin-safetensors' config reader reads them back to the
same :class:`ModelConfig` (tested).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from forge_kernel.interfaces.loader import ModelConfig, ModelSource

_HF = {  # forge architecture -> (model_type, class, activation key, activation)
    "llama": ("llama", "LlamaForCausalLM", "hidden_act", "silu"),
    "mistral": ("mistral", "MistralForCausalLM", "hidden_act", "silu"),
    "qwen2": ("qwen2", "Qwen2ForCausalLM", "hidden_act", "silu"),
    "qwen3": ("qwen3", "Qwen3ForCausalLM", "hidden_act", "silu"),
    "gemma3": ("gemma3_text", "Gemma3ForCausalLM", "hidden_activation", "gelu_pytorch_tanh"),
    "gemma3_text": ("gemma3_text", "Gemma3ForCausalLM", "hidden_activation",
                    "gelu_pytorch_tanh"),
}
SUPPORTED = tuple(sorted(_HF))


def hf_config(cfg: ModelConfig, tokenizer: Any, quantization: dict[str, Any]) -> dict[str, Any]:
    """``config.json`` for ``cfg``."""
    if cfg.architecture not in _HF:
        raise ValueError(f"architecture {cfg.architecture!r} cannot be written as EXL2 "
                         f"(supported: {', '.join(SUPPORTED)})")
    model_type, cls, act_key, act = _HF[cfg.architecture]
    out: dict[str, Any] = {
        "architectures": [cls], "model_type": model_type, act_key: act,
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads, "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim, "max_position_embeddings": cfg.context_length,
        "rms_norm_eps": cfg.rms_norm_eps, "tie_word_embeddings": cfg.tie_word_embeddings,
        "torch_dtype": "float16",
        "bos_token_id": getattr(tokenizer, "bos_id", None),
        "eos_token_id": sorted(getattr(tokenizer, "eos_ids", ()) or ()),
    }
    extra = cfg.extra
    if model_type == "gemma3_text":
        full = {"rope_type": "default", "rope_theta": cfg.rope_theta, **(cfg.rope_scaling or {})}
        local = {"rope_type": "default", "rope_theta": extra.get("rope_local_theta", 10000.0)}
        out.update(
            layer_types=[("sliding" if t == "sliding" else "full") + "_attention"
                         for t in extra.get("layer_types", [])],
            sliding_window=extra.get("sliding_window"),
            query_pre_attn_scalar=extra.get("query_pre_attn_scalar"),
            final_logit_softcapping=extra.get("final_logit_softcapping"),
            attn_logit_softcapping=extra.get("attn_logit_softcapping"),
            rope_parameters={"full_attention": full, "sliding_attention": local},
            rope_theta=cfg.rope_theta, rope_local_base_freq=local["rope_theta"],
        )
    else:
        out.update(rope_theta=cfg.rope_theta, rope_scaling=cfg.rope_scaling)
        if extra.get("sliding_window") and model_type == "mistral":
            out["sliding_window"] = extra["sliding_window"]
    out["quantization_config"] = quantization
    return out


def write_meta_files(directory: Path, source: ModelSource, quantization: dict[str, Any]) -> None:
    """Write config, generation config and tokenizer files of ``source`` into ``directory``."""
    tok = source.tokenizer
    config = hf_config(source.config, tok, quantization)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    generation = dict(source.metadata.get("generation") or {})
    generation.setdefault("bos_token_id", config["bos_token_id"])
    generation["eos_token_id"] = config["eos_token_id"]
    (directory / "generation_config.json").write_text(json.dumps(generation, indent=2))
    rust = getattr(tok, "_tok", None)  # forge-plugin-tokenizers' HFTokenizer wraps a Rust one
    if rust is None:
        raise ValueError(f"{source.path}: its tokenizer ({type(tok).__name__}) cannot be saved "
                         f"as tokenizer.json")
    rust.save(str(directory / "tokenizer.json"))
    bos = tok.id_to_piece(tok.bos_id) if getattr(tok, "bos_id", None) is not None else None
    eos = sorted(tok.eos_ids)
    tok_config = {
        "bos_token": bos, "eos_token": tok.id_to_piece(eos[0]) if eos else None,
        "add_bos_token": bool(getattr(tok, "add_bos", False)),
        "chat_template": getattr(tok, "chat_template", None)
        or source.metadata.get("chat_template"),
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))
