"""Perplexity computed the way llama.cpp's ``llama-perplexity`` computes it, so figures compare.

1. The whole text is tokenized once, with the model's BOS prepended when it expects one (one
   trailing newline is dropped first, as ``-f`` does).
2. It is cut into ``n = len(tokens) // ctx`` non-overlapping windows of ``ctx`` tokens (the
   tail is ignored); fewer than 2 windows is an error, as in llama.cpp.
3. Each window is run alone from position 0, its first token replaced by BOS (when the model
   uses one), and only its second half is scored: positions ``ctx//2 .. ctx-2`` predict
   tokens ``ctx//2+1 .. ctx-1`` (``ctx - 1 - ctx//2`` scores per window).
4. ``PPL = exp(mean NLL)``; its standard error ``PPL * sqrt(var(NLL) / (count - 1))``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from forge_plugin_eval.errors import EvalError
from forge_plugin_eval.model import load_model
from forge_plugin_eval.windows import run_windows


@dataclass(slots=True)
class PerplexityResult:
    """Outcome of :func:`perplexity`."""

    ppl: float
    stderr: float
    """Standard error of ``ppl`` (llama-perplexity's ``+/-``)."""
    nll: float
    """Mean negative log-likelihood per scored token (nats)."""
    tokens: int
    """Tokens in the text (BOS included)."""
    windows: int
    scored: int
    """Tokens scored (``windows * (ctx - 1 - ctx // 2)``)."""
    ctx: int
    seconds: float
    model: str = ""
    activations: str = "fp32"
    """``ggml``: llama.cpp's activation rounding was emulated (see ``numerics``)."""
    window_ppl: list[float] = field(default_factory=list)
    """Running PPL after each window (llama-perplexity's ``[1]x,[2]y,...`` line)."""

    def describe(self) -> str:
        return (f"{self.model}: PPL = {self.ppl:.4f} +/- {self.stderr:.5f} over {self.windows} "
                f"windows of {self.ctx} tokens ({self.scored} scored of {self.tokens}), "
                f"{self.activations} activations, {self.seconds:.1f} s")


def read_text(path: Path | str) -> str:
    """The text of ``path`` as ``-f`` reads it (one trailing newline dropped)."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"text file {path} does not exist" if not path.exists()
                        else f"{path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EvalError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if text.endswith("\n"):
        text = text[:-1]
    if not text.strip():
        raise EvalError(f"{path} is empty")
    return text


def make_windows(tokens: Sequence[int], ctx: int, bos: int | None, min_windows: int = 2,
                 purpose: str = "perplexity") -> list[list[int]]:
    """Non-overlapping ``ctx``-token windows, first token replaced by ``bos`` when given."""
    if ctx < 4:
        raise EvalError(f"ctx must be at least 4 tokens, got {ctx}")
    count = len(tokens) // ctx
    if count < min_windows:
        raise EvalError(f"the text has {len(tokens)} tokens; {purpose} with ctx={ctx} needs "
                        f"at least {min_windows * ctx} ({min_windows} window"
                        f"{'s' if min_windows > 1 else ''}): use a longer text or a smaller "
                        f"--ctx")
    windows = [list(tokens[i * ctx:(i + 1) * ctx]) for i in range(count)]
    if bos is not None:
        for w in windows:
            w[0] = bos
    return windows


def score_windows(model: Any, windows: list[list[int]], batch: int | None = None,
                  progress: Callable[[int, int, float], None] | None = None
                  ) -> tuple[list[float], list[float]]:
    """Per-token NLLs of every window's second half; ``progress(done, total, running_ppl)``
    after each window. Returns ``(nlls, running ppl per window)``."""
    em = load_model(model)
    ctx = len(windows[0])
    first = ctx // 2
    nlls: list[float] = []
    running: list[float] = []
    total = 0.0
    for index, logits in run_windows(em, windows, batch or ctx, (first, ctx - 1)):
        targets = torch.tensor(windows[index][first + 1:], dtype=torch.long)
        # float64 log-softmax: llama.cpp sums the exponentials in double precision
        logp = torch.log_softmax(logits.double(), dim=-1)
        values = (-logp.gather(1, targets[:, None])[:, 0]).tolist()
        nlls.extend(values)
        total += math.fsum(values)
        running.append(math.exp(total / len(nlls)))
        if progress is not None:
            progress(len(running), len(windows), running[-1])
    return nlls, running


def perplexity(model: Any, text_path: Path | str, ctx: int = 512, batch: int | None = None,
               *, tokenizer: Any = None, activations: str = "ggml",
               progress: Callable[[int, int, float], None] | None = None) -> PerplexityResult:
    """Perplexity of ``model`` on the text in ``text_path`` (see the module docstring).

    ``model``: a path or name forge resolves, an :class:`~forge_plugin_eval.model.EvalModel`,
    or a built ``CausalLM`` with ``tokenizer``. ``batch``: tokens per forward step (default
    ``ctx``); the result does not depend on it. ``activations``: ``ggml`` rounds activations
    as llama.cpp's CPU backend does (comparable with llama-perplexity), ``fp32`` keeps them
    exact. Raises :class:`EvalError` on bad input."""
    started = time.perf_counter()
    text = read_text(text_path)
    em = load_model(model, tokenizer=tokenizer, activations=activations)
    tok = em.tokenizer
    if tok is None:
        raise EvalError(f"{em.name}: no tokenizer; pass tokenizer= with a built model")
    tokens = tok.encode(text, add_special_tokens=True)
    bos = tok.bos_id if tok.add_bos else None
    windows = make_windows(tokens, int(ctx), bos)
    nlls, running = score_windows(em, windows, batch, progress)
    n = len(nlls)
    mean = math.fsum(nlls) / n
    var = math.fsum(v * v for v in nlls) / n - mean * mean
    ppl = math.exp(mean)
    stderr = ppl * math.sqrt(var / (n - 1)) if var > 0 and n > 1 else 0.0
    return PerplexityResult(ppl=ppl, stderr=stderr, nll=mean, tokens=len(tokens),
                            windows=len(windows), scored=n, ctx=int(ctx),
                            seconds=time.perf_counter() - started, model=em.name,
                            activations=em.activations, window_ppl=running)
