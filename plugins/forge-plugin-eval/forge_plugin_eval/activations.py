"""Per-input-column activation statistics of every linear layer (importance matrices).

For each matrix ``W`` (``[out, in]``) the model multiplies, we accumulate over calibration
tokens ``sum_t x_t[j]^2`` for every input column ``j``: the diagonal of ``X^T X``, which is what
llama.cpp's ``llama-imatrix`` collects and its k-quant search weights errors by. The text is cut
into ``ctx``-token windows exactly as for perplexity (BOS first), and every token of every
window counts. The LM head is skipped, as llama-imatrix does by default (with tied embeddings
it is the embedding matrix, which is looked up, not multiplied).

Collection wraps the decoder's linear ops for the duration of the pass and restores them after,
so the model is unchanged afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from forge_plugin_eval.errors import EvalError
from forge_plugin_eval.model import load_model
from forge_plugin_eval.score import make_windows, read_text
from forge_plugin_eval.windows import run_windows

_LINEARS = (("q", "attn_q"), ("k", "attn_k"), ("v", "attn_v"), ("o", "attn_output"))
_MLP = (("gate", "ffn_gate"), ("up", "ffn_up"), ("down", "ffn_down"))


@dataclass(slots=True)
class ActivationStats:
    """Sums of squared inputs per column, by GGUF tensor name (``blk.0.attn_q.weight``)."""

    sums: dict[str, np.ndarray] = field(default_factory=dict)
    """float64 ``[in_features]`` per tensor."""
    counts: dict[str, int] = field(default_factory=dict)
    """Tokens accumulated per tensor."""
    chunks: int = 0
    chunk_size: int = 0
    dataset: str = ""
    seconds: float = 0.0

    def importance(self) -> dict[str, np.ndarray]:
        """Mean squared activation per column (float32), the weights a quantizer uses."""
        return {k: (v / max(1, self.counts[k])).astype(np.float32) for k, v in self.sums.items()}


class _Recorder:
    """A linear op that adds its input's squared columns to ``stats`` before running."""

    __slots__ = ("op", "name", "stats", "in_features", "out_features")

    def __init__(self, op: Any, name: str, stats: ActivationStats) -> None:
        self.op, self.name, self.stats = op, name, stats
        self.in_features = getattr(op, "in_features", None)
        self.out_features = getattr(op, "out_features", None)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        sq = x.detach().double().pow(2).sum(dim=0).numpy()
        if self.name in self.stats.sums:
            self.stats.sums[self.name] += sq
        else:
            self.stats.sums[self.name] = sq.copy()
        self.stats.counts[self.name] = self.stats.counts.get(self.name, 0) + x.shape[0]
        return self.op(x)


def _wrap(model: Any, stats: ActivationStats) -> Callable[[], None]:
    """Install recorders on every layer's linears; returns the function that removes them."""
    layers = getattr(model, "layers", None)
    if not layers:
        raise EvalError(f"{type(model).__name__} has no decoder layers to record")
    saved: list[tuple[Any, str, Any]] = []
    for i, layer in enumerate(layers):
        targets = [(layer, a, n) for a, n in _LINEARS] + [(layer.mlp, a, n) for a, n in _MLP]
        for owner, attr, gguf in targets:
            op = getattr(owner, attr)
            saved.append((owner, attr, op))
            setattr(owner, attr, _Recorder(op, f"blk.{i}.{gguf}.weight", stats))

    def restore() -> None:
        for owner, attr, op in saved:
            setattr(owner, attr, op)

    return restore


def collect_activations(model: Any, text_path: Path | str, ctx: int | None = None,
                        chunks: int | None = None, batch: int | None = None, *,
                        tokenizer: Any = None,
                        progress: Callable[[int, int], None] | None = None) -> ActivationStats:
    """Squared-activation sums of ``model``'s linears over the text (at most ``chunks``
    windows of ``ctx`` tokens, default ``min(512, context length)``; at least one window is
    needed)."""
    started = time.perf_counter()
    text = read_text(text_path)
    em = load_model(model, tokenizer=tokenizer)
    if em.tokenizer is None:
        raise EvalError(f"{em.name}: no tokenizer; pass tokenizer= with a built model")
    if ctx is None:
        ctx = min(512, int(em.model.config.context_length))
    tokens = em.tokenizer.encode(text, add_special_tokens=True)
    bos = em.tokenizer.bos_id if em.tokenizer.add_bos else None
    windows = make_windows(tokens, int(ctx), bos, min_windows=1, purpose="calibration")
    if chunks is not None:
        if chunks < 1:
            raise EvalError(f"chunks must be positive, got {chunks}")
        windows = windows[:chunks]
    stats = ActivationStats(chunk_size=int(ctx), dataset=Path(text_path).name)
    restore = _wrap(em.model, stats)
    try:
        for done, _ in enumerate(run_windows(em, windows, batch or ctx, None), 1):
            stats.chunks = done
            if progress is not None:
                progress(done, len(windows))
    finally:
        restore()
    stats.seconds = time.perf_counter() - started
    return stats
