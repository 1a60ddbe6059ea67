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
    """Everything :func:`forge_kernel.engine.builder.build_engine` needs to build an engine, and
    the one place engine defaults live: :class:`forge_kernel.config.ForgeConfig` nests it, and
    the config file, ``FORGE_*`` variables and ``forge serve``/``forge run`` flags fill its
    fields by name (``max_batch_size`` <- ``FORGE_MAX_BATCH_SIZE`` <- ``--max-batch-size``).

    Implementations (``backend``, ``kv_cache``, ``scheduler``, ``loader``) are plugin names,
    resolved once at build time.
    """

    model: str | Path | None = None
    """A path, a stored/built-in model name, or ``None`` for the embedded default model (the
    built engine's config holds the resolved path)."""
    backend: str = "cpu"
    device: int | None = None
    """Device index for backends that have several (``--device N``: ``cuda:N``), passed to the
    backend factory as ``device=``; ``None``: the backend's own default."""
    kv_cache: str | None = None
    """KV-cache plugin name; ``None``: the backend's ``preferred_kv_cache`` (``cuda``:
    ``device-paged``), else ``paged``. The built engine's config holds the name used."""
    scheduler: str = "continuous"
    max_batch_size: int = 64
    """Most sequences decoded together in one step (``--max-batch-size``)."""
    max_prefill_tokens: int = 512
    """Per-step budget of prompt tokens; longer prompts are prefilled in chunks."""
    block_size: int = 16
    num_blocks: int | None = None
    """KV-cache size in blocks; ``None`` sizes it from ``kv_memory_bytes``."""
    kv_memory_bytes: int | None = None
    """KV-cache memory budget (``num_blocks`` overrides it); ``None``:
    :func:`~forge_kernel.engine.builder.default_kv_budget`."""
    threads: int | None = None
    """Compute threads for the backend; ``None`` lets the backend choose."""
    max_model_len: int | None = None
    """Longest sequence (prompt + completion); ``None``: the model's context length, capped by
    the KV-cache capacity so that one request always fits."""
    loader: str | None = None
    """Weight-loader name; ``None`` sniffs the file."""
    model_name: str | None = None
    """Name the model is served under; ``None`` derives it from ``model``."""
    speculative: str | None = None
    """Speculative decoding (forge-plugin-speculative): ``"ngram"`` (prompt lookup) or
    ``"draft:MODEL"`` (a model with the same tokenizer); ``None``: off."""
    num_speculative_tokens: int = 5
    """Most draft tokens per sequence and step (the draft length adapts below it)."""
    lora: str | None = None
    """LoRA adapters served per request, ``name=PATH,...`` (``--lora``, repeatable; a PEFT
    adapter directory); forge-plugin-train loads them at start-up, requests pick one with
    ``model: "<base>:<name>"``."""


def require_backend(host: Any, command: str) -> None:
    """Say what to install (instead of a traceback) when ``host`` (a
    :class:`~forge_kernel.plugins.PluginHost`) has no compute backend, e.g. where only
    forge-kernel is installed; checked before the engine (torch) is imported."""
    if not host.registry.names("backend"):
        raise MissingPluginError(
            f"`{command}` needs a compute backend plugin, and none is installed or enabled.\n"
            "  pip install forge-plugin-cpu\n(see `forge plugins`)")


def find_model(host: Any, model: str | os.PathLike[str] | None) -> Path | None:
    """The path of ``model`` (``None``: :data:`DEFAULT_MODEL`): itself if it exists, else the
    first answer of ``host``'s ``forge_resolve_model`` hook; ``None`` when nobody knows it."""
    text = str(model) if model is not None and str(model) != "" else DEFAULT_MODEL
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
    text = str(model) if model is not None and str(model) != "" else DEFAULT_MODEL
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
