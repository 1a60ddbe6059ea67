"""collect_activations: per-column sums of squared linear inputs equal those recorded with
forward hooks on the transformers model over the same windows; the model is unchanged after."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TEXT, ByteTokenizer
from forge_plugin_eval import EvalError, collect_activations, perplexity

CTX = 64
HOOKED = {"self_attn.q_proj": "attn_q", "self_attn.o_proj": "attn_output",
          "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def test_sums_match_transformers_hooks(tiny, text_file):
    hf, model = tiny
    before = perplexity(model, text_file, ctx=CTX, tokenizer=ByteTokenizer()).ppl
    stats = collect_activations(model, text_file, ctx=CTX, tokenizer=ByteTokenizer())
    ids = ByteTokenizer().encode(TEXT)
    windows = [ids[i * CTX:(i + 1) * CTX] for i in range(len(ids) // CTX)]
    ref: dict[str, torch.Tensor] = {}
    hooks = []
    for i, layer in enumerate(hf.model.layers):
        for path, gguf_name in HOOKED.items():
            module = layer.get_submodule(path)
            key = f"blk.{i}.{gguf_name}.weight"

            def hook(_m, args, _out, key=key):
                sq = args[0][0].double().pow(2).sum(0)
                ref[key] = ref.get(key, 0) + sq
            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            for w in windows:
                w[0] = ByteTokenizer.bos_id
                hf(torch.tensor([w]))
    finally:
        for h in hooks:
            h.remove()
    assert stats.chunks == len(windows) and stats.chunk_size == CTX
    for key, value in ref.items():
        np.testing.assert_allclose(stats.sums[key], value.numpy(), rtol=1e-4)
        assert stats.counts[key] == len(windows) * CTX
    assert len(stats.sums) == 7 * len(hf.model.layers)
    after = perplexity(model, text_file, ctx=CTX, tokenizer=ByteTokenizer()).ppl
    assert after == before


def test_calibration_text_shorter_than_a_window(tiny, tmp_path):
    _, model = tiny
    short = tmp_path / "short.txt"
    short.write_text("tiny")
    with pytest.raises(EvalError, match=r"calibration with ctx=64 needs at least 64 \(1 window\)"):
        collect_activations(model, short, ctx=CTX, tokenizer=ByteTokenizer())
