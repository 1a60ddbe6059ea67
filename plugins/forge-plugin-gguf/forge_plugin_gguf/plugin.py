"""Hook implementations: registers the ``gguf`` weight loader."""

from __future__ import annotations

from forge_kernel import hookimpl


def _create_loader():
    from forge_plugin_gguf.loader import GGUFLoader

    return GGUFLoader()


@hookimpl
def forge_register_weight_loaders(register) -> None:
    register("gguf", _create_loader)
