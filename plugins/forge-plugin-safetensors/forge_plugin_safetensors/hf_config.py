"""Hugging Face ``config.json`` -> :class:`ModelConfig`.

Reads both spellings transformers has used: ``rope_theta``/``rope_scaling``/
``rope_local_base_freq`` (4.x) and the ``rope_parameters`` dict (5.x; per layer type for Gemma 3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forge_kernel.errors import ModelFormatError
from forge_kernel.interfaces.loader import ModelConfig

ARCHITECTURES = {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2", "qwen3": "qwen3",
                 "gemma3_text": "gemma3_text", "gemma3": "gemma3_text"}
"""HF ``model_type`` -> forge architecture name: the text model's own ``model_type`` (the
architecture plugins register HF model types next to GGUF names; Mistral keeps its name because
its sliding window matters)."""
GEMMA3 = frozenset({"gemma3", "gemma3_text"})
GEMMA3_SLIDING_PATTERN = 6


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language-model part of ``config`` (multimodal Gemma 3 nests it in ``text_config``)."""
    if config.get("model_type") == "gemma3" and isinstance(config.get("text_config"), dict):
        inner = dict(config["text_config"])
        inner.setdefault("model_type", "gemma3_text")
        inner.setdefault("tie_word_embeddings", config.get("tie_word_embeddings", True))
        return inner
    return config


def _rope(cfg: dict[str, Any], layer_type: str | None = None) -> dict[str, Any]:
    params = cfg.get("rope_parameters")
    if isinstance(params, dict) and layer_type and isinstance(params.get(layer_type), dict):
        return dict(params[layer_type])
    if isinstance(params, dict) and "rope_theta" in params:
        return dict(params)
    rope = dict(cfg.get("rope_scaling") or {})
    if layer_type == "sliding_attention":
        return {"rope_theta": cfg.get("rope_local_base_freq", 10000.0)}
    rope.setdefault("rope_theta", cfg.get("rope_theta", 10000.0))
    return rope


def _scaling(rope: dict[str, Any]) -> dict[str, Any] | None:
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind in (None, "default"):
        return None
    out = {k: v for k, v in rope.items() if k not in ("rope_theta", "type")}
    out["rope_type"] = kind
    return out


def _layer_types(cfg: dict[str, Any], layers: int) -> list[str]:
    """``"sliding"``/``"full"`` per layer, from ``layer_types`` or ``sliding_window_pattern``."""
    types = cfg.get("layer_types")
    if isinstance(types, list) and len(types) == layers:
        return ["sliding" if str(t).startswith("sliding") else "full" for t in types]
    period = int(cfg.get("sliding_window_pattern") or GEMMA3_SLIDING_PATTERN)
    return ["full" if (i + 1) % period == 0 else "sliding" for i in range(layers)]


def model_config(path: Path, raw: dict[str, Any], has_output: bool) -> ModelConfig:
    """The config of the model directory ``path`` (``raw`` = its config.json, already passed
    through :func:`text_config`); ``has_output`` tells whether an untied LM head is stored."""
    model_type = raw.get("model_type")
    if model_type not in ARCHITECTURES:
        raise ModelFormatError(path / "config.json", f"unknown model_type {model_type!r} "
                               f"(supported: {', '.join(sorted(ARCHITECTURES))})")
    arch = ARCHITECTURES[model_type]

    def need(key: str) -> Any:
        if raw.get(key) is None:
            raise ModelFormatError(path / "config.json", f"required key {key!r} is missing")
        return raw[key]

    hidden, heads, layers = int(need("hidden_size")), int(need("num_attention_heads")), \
        int(need("num_hidden_layers"))
    gemma = arch in GEMMA3
    rope = _rope(raw, "full_attention" if gemma else None)
    extra: dict[str, Any] = {}
    if raw.get("sliding_window") and (gemma or arch == "mistral"):
        extra["sliding_window"] = int(raw["sliding_window"])
    if gemma:
        extra.update(
            layer_types=_layer_types(raw, layers),
            rope_local_theta=float(_rope(raw, "sliding_attention").get("rope_theta", 10000.0)),
            query_pre_attn_scalar=float(raw.get("query_pre_attn_scalar") or 256),
            final_logit_softcapping=raw.get("final_logit_softcapping"),
            attn_logit_softcapping=raw.get("attn_logit_softcapping"),
        )
    return ModelConfig(
        architecture=arch,
        vocab_size=int(need("vocab_size")),
        hidden_size=hidden,
        intermediate_size=int(need("intermediate_size")),
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=int(raw.get("num_key_value_heads") or heads),
        head_dim=int(raw.get("head_dim") or hidden // heads),
        context_length=int(raw.get("max_position_embeddings") or 4096),
        rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
        rope_theta=float(rope.get("rope_theta", 10000.0)),
        rope_scaling=_scaling(rope),
        tie_word_embeddings=not has_output,
        extra=extra,
    )
