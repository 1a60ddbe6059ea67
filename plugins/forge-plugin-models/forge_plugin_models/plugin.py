"""Hook implementations: registers every architecture alias.

Free of torch imports so plugin discovery stays cheap; a family module is imported only when its
architecture is created.
"""

from __future__ import annotations

from typing import Any

from forge_kernel import hookimpl

ALIASES: dict[str, tuple[str, str]] = {
    "llama": ("forge_plugin_models.llama", "LlamaArchitecture"),
    "mistral": ("forge_plugin_models.llama", "LlamaArchitecture"),
    "qwen2": ("forge_plugin_models.qwen", "QwenArchitecture"),
    "qwen3": ("forge_plugin_models.qwen", "QwenArchitecture"),
    "gemma3": ("forge_plugin_models.gemma3", "Gemma3Architecture"),
    "gemma3_text": ("forge_plugin_models.gemma3", "Gemma3Architecture"),
}
"""Architecture name (GGUF ``general.architecture`` or HF ``model_type``) -> (module, class)."""


def _factory(alias: str):
    def create() -> Any:
        import importlib

        module, cls = ALIASES[alias]
        return getattr(importlib.import_module(module), cls)(alias)

    create.__doc__ = f"Create the {alias!r} architecture."
    return create


@hookimpl
def forge_register_model_architectures(register) -> None:
    """Offer each supported architecture under every name model files use for it."""
    for alias in ALIASES:
        register(alias, _factory(alias))
