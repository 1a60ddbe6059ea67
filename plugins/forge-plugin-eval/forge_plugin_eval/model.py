"""The model an evaluation runs: any file forge loads, built on the CPU backend.

Evaluation needs logits for *every* position of a window, while :meth:`CausalLM.forward` returns
only the last row of each chunk. So we use the decoder's parts directly, as its own forward does:
``hidden_states`` -> final RMSNorm -> LM head -> final logit soft-cap (Gemma). Weights are
dequantized to float32 (the backend's ``exact`` precision) so the figure measures the file's
weights, not the backend's faster int8 re-quantization. With ``activations="ggml"`` (the
default) the activations are rounded as llama.cpp's CPU backend rounds them
(:mod:`forge_plugin_eval.numerics`), so figures compare with llama-perplexity's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forge_plugin_eval.errors import EvalError

if TYPE_CHECKING:
    import torch

    from forge_kernel.interfaces.model import CausalLM
    from forge_kernel.interfaces.tokenizer import Tokenizer

_PARTS = ("hidden_states", "lm_head", "output_norm", "eps")


@dataclass(slots=True)
class EvalModel:
    """A built model, its tokenizer and where it came from."""

    model: CausalLM
    tokenizer: Tokenizer | None
    name: str
    path: Path | None = None
    activations: str = "fp32"
    """``ggml`` when llama.cpp's activation rounding is emulated, else ``fp32``."""

    def check(self) -> None:
        """Refuse a model that does not expose the decoder parts evaluation uses."""
        missing = [p for p in _PARTS if not hasattr(self.model, p)]
        if missing:
            raise EvalError(f"{self.name}: {type(self.model).__name__} has no "
                            f"{', '.join(missing)}; evaluation needs a forge_plugin_models "
                            f"DecoderLM (per-position logits)")

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """float32 logits ``[rows, vocab]`` of final hidden states ``[rows, hidden]``."""
        import torch
        from forge_plugin_models.layers import rms_norm

        m = self.model
        out = m.lm_head(rms_norm(hidden, m.output_norm, m.eps)).float()
        cap = getattr(getattr(m, "spec", None), "final_softcap", None)
        if cap is not None:
            out = torch.tanh(out / cap) * cap
        return out


def load_model(model: Any, *, tokenizer: Tokenizer | None = None, precision: str = "exact",
               threads: int | None = None, loader: str | None = None,
               activations: str = "ggml") -> EvalModel:
    """``model`` as an :class:`EvalModel`: a path or a model name forge resolves (store,
    built-ins; ``None`` is the default model), an :class:`EvalModel`, or an already built
    :class:`CausalLM` (then pass ``tokenizer`` for text input; its activations stay fp32, as
    the weights' types are unknown). ``activations``: ``ggml`` or ``fp32``."""
    from forge_kernel.interfaces.model import CausalLM
    from forge_plugin_eval.numerics import MODES, emulate_ggml

    if activations not in MODES:
        raise EvalError(f"activations must be one of {', '.join(MODES)}, got {activations!r}")

    if isinstance(model, EvalModel):
        built = model
    elif isinstance(model, CausalLM):
        built = EvalModel(model, tokenizer, type(model).__name__)
    else:
        from forge_kernel.engine.builder import resolve_model_path
        from forge_kernel.modeling import build_causal_lm, open_model_source
        from forge_kernel.plugins import get_host

        path = resolve_model_path(None if model is None else str(model))
        backend = get_host().registry.create("backend", "cpu", threads=threads,
                                             precision=precision)
        source = open_model_source(path, loader)
        built = EvalModel(build_causal_lm(source, backend), tokenizer or source.tokenizer,
                          str(model) if model is not None else path.name, path)
        built.check()
        if activations == "ggml":
            emulate_ggml(built.model, source.tensors)
            built.activations = "ggml"
    built.check()
    return built
