"""User-facing engine settings (what ``forge serve`` / ``forge run`` flags fill in), and how a
model name becomes a path. Torch-free: the CLI imports it before any model is loaded."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge_kernel.errors import MissingPluginError, ModelNotFound

DEFAULT_MODEL = "gemma3-270m"
"""The model used when none is given; a name that model resolvers (forge-plugin-store) know."""


@dataclass(slots=True)
class EngineConfig:
    """What :func:`~forge_kernel.engine.builder.build_engine` needs, and the one place engine
    defaults live; config file, ``FORGE_*`` and flags fill its fields by name. Implementations
    are plugin names, resolved once at build time."""

    model: str | Path | None = None
    """A path, a model name, or ``None`` for the default (built engines hold the path)."""
    backend: str = "cpu"
    device: int | None = None
    """Device index (``--device N``: ``cuda:N``), passed as ``device=``; ``None``: default."""
    kv_cache: str | None = None
    """``None``: the backend's ``preferred_kv_cache``, else ``paged``."""
    scheduler: str = "continuous"
    max_batch_size: int = 64
    max_prefill_tokens: int = 512
    """Per-step budget of prompt tokens (longer prompts are prefilled in chunks)."""
    block_size: int = 16
    num_blocks: int | None = None
    """``None``: sized from ``kv_memory_bytes``."""
    kv_memory_bytes: int | None = None
    """``None``: :func:`~forge_kernel.engine.builder.default_kv_budget`."""
    threads: int | None = None
    max_model_len: int | None = None
    """``None``: the model's context length, capped by the KV-cache capacity."""
    loader: str | None = None
    model_name: str | None = None
    speculative: str | None = None
    """``"ngram"`` or ``"draft:MODEL"`` (docs/speculative.md); ``None``: off."""
    num_speculative_tokens: int = 5
    """Most draft tokens per sequence and step (the draft length adapts below it)."""
    lora: str | None = None
    """``name=PATH,...`` PEFT adapters forge-plugin-train loads; requests pick ``base:name``."""


def require_backend(host: Any, command: str) -> None:
    """Say what to install when ``host`` has no compute backend (before torch is imported)."""
    if not host.registry.names("backend"):
        raise MissingPluginError(
            f"`{command}` needs a compute backend plugin, and none is installed or enabled.\n"
            "  pip install forge-plugin-cpu\n(see `forge plugins`)")


def find_model(host: Any, model: str | os.PathLike[str] | None) -> Path | None:
    """``model`` (``None``: :data:`DEFAULT_MODEL`) if it exists, else ``forge_resolve_model``'s
    answer; ``None`` when nobody knows it."""
    text = _name(model)
    path = Path(text).expanduser()
    if path.exists():
        return path
    resolved = host.hook.forge_resolve_model(name=text)
    return Path(resolved) if resolved is not None else None


def locate_model(host: Any, model: str | os.PathLike[str] | None) -> Path:
    """Like :func:`find_model`, but an unknown name is an error saying what to do."""
    path = find_model(host, model)
    if path is not None:
        return path
    text = _name(model)
    if not host.hook.forge_resolve_model.get_hookimpls():
        raise MissingPluginError(
            f"model {text!r} is not a file or directory, and no installed plugin resolves model "
            "names; pass a path, or install the model store: pip install forge-plugin-store")
    raise ModelNotFound(f"model {text!r} not found: not a file and no model plugin knows it "
                        f"(see `forge list`; `forge pull {text}` adds it)")


def display_name(model: str | os.PathLike[str] | None) -> str:
    """The name a model is served under: the name given, or the file's stem for a path."""
    if model is None or str(model) == "":
        return DEFAULT_MODEL
    path = Path(str(model)).expanduser()
    if path.exists():
        return path.stem if path.is_file() else path.name
    return str(model)


def _name(model: str | os.PathLike[str] | None) -> str:
    return str(model) if model is not None and str(model) != "" else DEFAULT_MODEL
