"""Hook implementations: registers the ``safetensors`` weight loader."""

from __future__ import annotations

from forge_kernel import hookimpl


def _create_loader():
    """The loader; its module (numpy, gguf's name tables) is imported only when asked for."""
    from forge_plugin_safetensors.loader import SafetensorsLoader

    return SafetensorsLoader()


@hookimpl
def forge_register_weight_loaders(register) -> None:
    register("safetensors", _create_loader)
