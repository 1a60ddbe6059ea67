"""Path -> runnable model through the installed plugins: :func:`open_model_source` picks a
weight loader (``can_load`` sniffing, or ``--loader NAME``), :func:`build_causal_lm` the
architecture the file's config names. Both run once per model load, never per token."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from forge_kernel.errors import MissingPluginError, ModelFormatError, UnknownImplementationError
from forge_kernel.plugins import get_host

if TYPE_CHECKING:
    from forge_kernel.interfaces.backend import Backend
    from forge_kernel.interfaces.loader import ModelSource
    from forge_kernel.interfaces.model import CausalLM

LOADER_PLUGINS = (
    "forge-plugin-gguf (GGUF files) or forge-plugin-safetensors (Hugging Face directories)"
)
ARCHITECTURE_PLUGIN = "forge-plugin-models"


def open_model_source(path: Path | str, loader: str | None = None) -> ModelSource:
    """Open ``path`` with the named ``loader`` or the first installed one whose ``can_load``
    accepts it. Raises :class:`ModelFormatError` (naming the file) when the path is missing or
    no loader recognizes it, :class:`MissingPluginError` when no loader plugin is installed,
    :class:`UnknownImplementationError` for an unknown ``loader`` name."""
    path = Path(path)
    registry = get_host().registry
    if loader is not None:
        # An explicit choice skips sniffing: the loader's own error says what is wrong.
        return registry.create("weight_loader", loader).load(path)
    if not path.exists():
        raise ModelFormatError(path, "no such file or directory")
    impls = registry.implementations("weight_loader")
    if not impls:
        raise MissingPluginError(
            f"cannot open {path}: no weight loader is installed; install {LOADER_PLUGINS}"
        )
    for impl in impls:
        candidate = impl.factory()
        if candidate.can_load(path):
            return candidate.load(path)
    names = ", ".join(impl.name for impl in impls)
    raise ModelFormatError(
        path, f"no installed weight loader recognizes this model (tried: {names}); "
              f"for other formats install {LOADER_PLUGINS}"
    )


def build_causal_lm(source: ModelSource, backend: Backend) -> CausalLM:
    """Build the architecture ``source.config.architecture`` names on ``backend``; a
    :class:`ModelFormatError` names the file, the architecture and the installed ones when no
    plugin provides it."""
    arch = source.config.architecture
    registry = get_host().registry
    try:
        impl = registry.get("model_architecture", arch)
    except UnknownImplementationError:
        installed = ", ".join(registry.names("model_architecture"))
        hint = (f"installed architectures: {installed}" if installed
                else f"no architecture plugin is installed; install {ARCHITECTURE_PLUGIN}")
        raise ModelFormatError(
            source.path, f"architecture {arch!r} is not supported ({hint})"
        ) from None
    return impl.factory().build(source, backend)
