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
    max_number_digits: int = 15
    """Longest run of digits in a JSON number's integer part, fraction or exponent (15: beyond
    what a double holds exactly); past it the matcher allows only what ends the run. Applies
    to JSON kinds and grammars (which may embed JSON), not to regexes. ``0``: no limit."""
    max_string_length: int = 512
    """``maxLength`` given to JSON-schema strings that have no length, pattern, format, enum
    or const of their own. ``0``: no limit."""
    close_reserve: int = 12
    """In a request's last ``close_reserve`` tokens the matcher prefers tokens that close the
    open strings/arrays/objects, so the JSON can end before ``max_tokens``. ``0``: off."""
    max_tool_rounds: int = 4
    """Server-side tools: model calls the server answers before the reply goes back."""
    warm_start: bool = False
    """Build the tokenizer table (~4 s for a 262k vocabulary) in the background at server
    start instead of on the first constrained request."""


CONFIG = StructuredConfig()
"""The effective settings (replaced by ``forge_configure``)."""
