"""Qwen2 and Qwen3 (``qwen2``, ``qwen3``).

Qwen2 is Llama with q/k/v biases (picked up from the file's ``attn_{q,k,v}.bias``). Qwen3 drops
the biases and adds a per-head RMSNorm on q and k before RoPE (``attn_q_norm``/``attn_k_norm``).
"""

from __future__ import annotations

from forge_kernel.interfaces.architecture import ModelArchitecture
from forge_kernel.interfaces.backend import Backend
from forge_kernel.interfaces.loader import ModelSource
from forge_kernel.interfaces.model import CausalLM
from forge_plugin_models.common import rope_table
from forge_plugin_models.decoder import DecoderLM, DecoderSpec, check_config


class QwenArchitecture(ModelArchitecture):
    """Builds Qwen2 (``name="qwen2"``) or Qwen3 (``name="qwen3"``) models."""

    def __init__(self, name: str = "qwen2") -> None:
        if name not in ("qwen2", "qwen3"):
            raise ValueError(f"QwenArchitecture: unknown variant {name!r} (qwen2 or qwen3)")
        self.name = name

    def build(self, source: ModelSource, backend: Backend) -> CausalLM:
        cfg = source.config
        check_config(source, cfg)
        spec = DecoderSpec(
            activation="silu",
            qk_norm=self.name == "qwen3",
            rope_tables=[rope_table(source, backend, cfg.rope_theta, cfg.rope_scaling)],
        )
        return DecoderLM(source, backend, spec)
