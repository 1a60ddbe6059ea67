"""Model evaluation on forge's own engine: perplexity as llama-perplexity computes it
(``forge eval perplexity``) and per-column activation statistics (importance matrices).

Public API (stable): :func:`perplexity`, :class:`PerplexityResult`, :class:`EvalError`,
:func:`collect_activations`, :func:`load_model`. The names are imported on first use, so that
discovering the plugin (``forge --help``, ``forge plugins``) never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ActivationStats": "activations", "collect_activations": "activations",
    "EvalError": "errors", "EvalModel": "model", "load_model": "model",
    "PerplexityResult": "score", "perplexity": "score",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'forge_plugin_eval' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"forge_plugin_eval.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
