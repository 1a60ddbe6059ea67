"""Gemma 3 text models (``gemma3``, ``gemma3_text``), matching transformers' ``Gemma3ForCausalLM``.

Differences from Llama: embeddings scaled by ``sqrt(hidden_size)``; RMSNorm before *and after*
attention and the MLP; per-head q/k RMSNorm; GELU-tanh gated MLP; softmax scale
``query_pre_attn_scalar ** -0.5``; interleaved local (sliding-window) and global layers, local
layers with RoPE base ``rope_local_theta`` (10 000) and global ones with ``rope_theta`` (1e6,
where any ``rope_scaling`` applies); tied embeddings. Norm weights already include the ``+1``.
"""

from __future__ import annotations

import math

from forge_kernel.errors import ModelFormatError
from forge_kernel.interfaces.architecture import ModelArchitecture
from forge_kernel.interfaces.backend import Backend
from forge_kernel.interfaces.loader import ModelSource
from forge_kernel.interfaces.model import CausalLM
from forge_plugin_models.common import rope_table
from forge_plugin_models.decoder import DecoderLM, DecoderSpec, check_config

_LAYER_TYPES = {"sliding": True, "sliding_attention": True, "local": True,
                "full": False, "full_attention": False, "global": False}
"""Accepted spellings of ``extra["layer_types"]`` entries -> is the layer local?"""


def layer_is_sliding(source: ModelSource) -> list[bool]:
    """Per layer: True for local (sliding-window) layers.

    From ``extra["layer_types"]`` when present, else from ``sliding_window_pattern`` (every
    ``pattern``-th layer is global, as in the released checkpoints; default 6).
    """
    cfg = source.config
    types = cfg.extra.get("layer_types")
    if types:
        if len(types) != cfg.num_layers:
            raise ModelFormatError(source.path, f"layer_types has {len(types)} entries for "
                                                f"{cfg.num_layers} layers")
        try:
            return [_LAYER_TYPES[str(t)] for t in types]
        except KeyError as exc:
            raise ModelFormatError(source.path, f"unknown Gemma 3 layer type {exc.args[0]!r} "
                                                f"(expected 'sliding' or 'full')") from None
    pattern = int(cfg.extra.get("sliding_window_pattern") or 6)
    return [(i + 1) % pattern != 0 for i in range(cfg.num_layers)]


class Gemma3Architecture(ModelArchitecture):
    """Builds Gemma 3 text decoders; ``name`` is the alias it was registered under."""

    def __init__(self, name: str = "gemma3") -> None:
        self.name = name

    def build(self, source: ModelSource, backend: Backend) -> CausalLM:
        cfg = source.config
        check_config(source, cfg)
        extra = cfg.extra
        sliding = layer_is_sliding(source)
        window = extra.get("sliding_window")
        if any(sliding) and not window:
            raise ModelFormatError(source.path, "Gemma 3 config has local layers but no "
                                                "sliding_window")
        local = rope_table(source, backend, float(extra.get("rope_local_theta") or 10000.0), None)
        # transformers applies rope_scaling (e.g. linear x8 on 4B+) to global layers only.
        full = rope_table(source, backend, cfg.rope_theta, cfg.rope_scaling)
        scalar = float(extra.get("query_pre_attn_scalar") or cfg.head_dim)
        spec = DecoderSpec(
            activation="gelu_tanh",
            qk_norm=True,
            sandwich_norms=True,
            embed_scale=math.sqrt(cfg.hidden_size),
            attn_scale=scalar**-0.5,
            # transformers' Gemma3Attention never passes attn_logit_softcapping to attention
            # (Gemma 2 did; released Gemma 3 configs set it to null), so neither do we.
            attn_softcap=None,
            final_softcap=_opt_float(extra.get("final_logit_softcapping")),
            layer_windows=[int(window) if s else None for s in sliding],
            layer_rope=[0 if s else 1 for s in sliding],
            rope_tables=[local, full],
        )
        return DecoderLM(source, backend, spec)


def _opt_float(value: object) -> float | None:
    return float(value) if value else None
