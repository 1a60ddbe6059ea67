"""Llama family: Llama 2/3/3.1, TinyLlama, SmolLM, Mistral (``llama``, ``mistral``).

Pre-norm decoder with SiLU-gated MLP and rotate-half RoPE (with linear or llama3 scaling). Optional
q/k/v/o biases are picked up when the file has them. Mistral's sliding window is honoured when the
config carries one (``extra["sliding_window"]``).
"""

from __future__ import annotations

from forge_kernel.interfaces.architecture import ModelArchitecture
from forge_kernel.interfaces.backend import Backend
from forge_kernel.interfaces.loader import ModelSource
from forge_kernel.interfaces.model import CausalLM
from forge_plugin_models.common import rope_table
from forge_plugin_models.decoder import DecoderLM, DecoderSpec, check_config


class LlamaArchitecture(ModelArchitecture):
    """Builds Llama-family models; ``name`` is the alias it was registered under."""

    def __init__(self, name: str = "llama") -> None:
        self.name = name

    def build(self, source: ModelSource, backend: Backend) -> CausalLM:
        cfg = source.config
        check_config(source, cfg)
        window = cfg.extra.get("sliding_window") if self.name == "mistral" else None
        spec = DecoderSpec(
            activation="silu",
            layer_windows=[int(window) if window else None] * cfg.num_layers,
            rope_tables=[rope_table(source, backend, cfg.rope_theta, cfg.rope_scaling)],
        )
        return DecoderLM(source, backend, spec)
