"""Model evaluation on forge's own engine: perplexity as llama-perplexity computes it
(``forge eval perplexity``) and per-column activation statistics (importance matrices).

Public API (stable): :func:`perplexity`, :class:`PerplexityResult`, :class:`EvalError`,
:func:`collect_activations`, :func:`load_model`.
"""

from forge_plugin_eval.activations import ActivationStats, collect_activations
from forge_plugin_eval.errors import EvalError
from forge_plugin_eval.model import EvalModel, load_model
from forge_plugin_eval.perplexity import PerplexityResult, perplexity

__all__ = ["ActivationStats", "EvalError", "EvalModel", "PerplexityResult", "collect_activations",
           "load_model", "perplexity"]
