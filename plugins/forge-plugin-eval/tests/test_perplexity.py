"""Perplexity of a tiny random model equals a direct transformers computation of the same
windows (BOS first, second half scored); batching does not change it; bad input is refused.

Tolerance: both sides compute float32 logits of the same weights (different op order), so
per-token NLLs agree to ~1e-6; we allow 1e-5 relative on the perplexity."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch
from conftest import TEXT, ByteTokenizer
from forge_plugin_eval import EvalError, perplexity

CTX = 64


def reference(hf, text: str, ctx: int) -> tuple[float, int]:
    ids = ByteTokenizer().encode(text)
    nlls = []
    for w in range(len(ids) // ctx):
        window = ids[w * ctx:(w + 1) * ctx]
        window[0] = ByteTokenizer.bos_id
        with torch.no_grad():
            logits = hf(torch.tensor([window])).logits[0].double()
        logp = torch.log_softmax(logits, -1)
        for pos in range(ctx // 2, ctx - 1):
            nlls.append(-float(logp[pos, window[pos + 1]]))
    return math.exp(sum(nlls) / len(nlls)), len(nlls)


def test_tiny_model_perplexity_equals_direct_torch(tiny, text_file):
    hf, model = tiny
    result = perplexity(model, text_file, ctx=CTX, tokenizer=ByteTokenizer())
    ppl, scored = reference(hf, TEXT, CTX)
    assert result.scored == scored == result.windows * (CTX - 1 - CTX // 2)
    assert result.windows == (len(TEXT.encode()) + 1) // CTX
    assert result.ppl == pytest.approx(ppl, rel=1e-5)
    assert 0 < result.stderr < result.ppl
    assert result.window_ppl[-1] == pytest.approx(result.ppl)


@pytest.mark.parametrize("batch", [16, 40, 2 * CTX, 3 * CTX + 5])
def test_batch_does_not_change_the_result(tiny, text_file, batch):
    _, model = tiny
    base = perplexity(model, text_file, ctx=CTX, tokenizer=ByteTokenizer())
    other = perplexity(model, text_file, ctx=CTX, batch=batch, tokenizer=ByteTokenizer())
    assert other.ppl == pytest.approx(base.ppl, rel=1e-5)


def test_bad_input_is_a_clear_error(tiny, tmp_path):
    _, model = tiny
    with pytest.raises(EvalError, match="does not exist"):
        perplexity(model, tmp_path / "missing.txt", ctx=CTX, tokenizer=ByteTokenizer())
    short = tmp_path / "short.txt"
    short.write_text("x" * (2 * CTX - 3))
    with pytest.raises(EvalError, match=r"has 126 tokens.*needs at least 128 \(2 windows\)"):
        perplexity(model, short, ctx=CTX, tokenizer=ByteTokenizer())
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(EvalError, match="is empty"):
        perplexity(model, empty, ctx=CTX, tokenizer=ByteTokenizer())
    with pytest.raises(EvalError, match="no tokenizer"):
        perplexity(model, short, ctx=CTX)


def test_cli_reports_a_missing_file_without_a_traceback(tmp_path):
    env = {**os.environ, "FORGE_HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "forge_kernel", "eval", "perplexity",
                          "gemma3-270m", str(tmp_path / "nope.txt")], env=env, text=True,
                         capture_output=True, timeout=300)
    assert run.returncode != 0
    assert "nope.txt does not exist" in run.stderr
    assert "Traceback" not in run.stderr
