"""Path -> runnable model through the installed plugins: a weight loader, then the architecture
the file's config names (once per model load)."""

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
    """Open ``path`` with ``loader`` or the first loader whose ``can_load`` accepts it;
    ``ModelFormatError`` (naming the file) or ``MissingPluginError`` when none can."""
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
    """Build ``source.config.architecture`` on ``backend`` (``ModelFormatError`` if unknown)."""
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
