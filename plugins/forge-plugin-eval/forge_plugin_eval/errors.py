"""The one error type evaluation raises on bad input."""

from __future__ import annotations

from forge_kernel.errors import ForgeError


class EvalError(ForgeError, ValueError):
    """Bad evaluation input: a missing or empty text, a text too short for the context, a model
    that cannot give per-token logits, an invalid ``ctx``/``batch``."""
