"""User-facing engine settings (what ``forge serve`` / ``forge run`` flags fill in)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(slots=True)
class EngineConfig:
    """Everything :func:`forge_kernel.engine.builder.build_engine` needs to build an engine.

    Implementations (``backend``, ``kv_cache``, ``scheduler``, ``loader``) are plugin names,
    resolved once at build time.
    """

    model: str | Path | None = None
    """A path, a stored/built-in model name, or ``None`` for the embedded default model."""
    backend: str = "cpu"
    kv_cache: str = "paged"
    scheduler: str = "continuous"
    max_batch_size: int = 64
    """Most sequences decoded together in one step (``--max-batch-size``)."""
    max_prefill_tokens: int = 512
    """Per-step budget of prompt tokens; longer prompts are prefilled in chunks."""
    block_size: int = 16
    num_blocks: int | None = None
    """KV-cache size in blocks; ``None`` sizes it from ``kv_memory_bytes``."""
    kv_memory_bytes: int | None = None
    """KV-cache memory budget; ``None``: room for 4096 tokens (or ``max_model_len``, if larger)
    of the model, at most 512 MiB (see :func:`~forge_kernel.engine.builder.default_kv_budget`).
    ``num_blocks`` overrides both."""
    threads: int | None = None
    """Compute threads for the backend; ``None`` lets the backend choose."""
    max_model_len: int | None = None
    """Longest sequence (prompt + completion); ``None``: the model's context length, capped by
    the KV-cache capacity so that one request always fits."""
    loader: str | None = None
    """Weight-loader name; ``None`` sniffs the file."""
    model_name: str | None = None
    """Name the model is served under; ``None`` derives it from ``model``."""
