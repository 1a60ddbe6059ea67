"""The ``[structured]`` configuration section."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class StructuredConfig:
    """Settings of forge-plugin-structured (``[structured]`` / ``FORGE_STRUCTURED_*``)."""

    cache_size: int = 256
    """Compiled grammars kept (LRU), keyed by the normalized spec."""
    whitespace_flexible: bool = False
    """``False``: JSON is written in one fixed style (``{"a": 1, "b": [2, 3]}``), which keeps
    small models from looping on whitespace; ``True``: any JSON whitespace is allowed."""
    max_tool_rounds: int = 4
    """Server-side tools: model calls the server answers before the reply goes back."""
    warm_start: bool = False
    """Build the tokenizer table (~4 s for a 262k vocabulary) in the background at server
    start instead of on the first constrained request."""


CONFIG = StructuredConfig()
"""The effective settings (replaced by ``forge_configure``)."""
