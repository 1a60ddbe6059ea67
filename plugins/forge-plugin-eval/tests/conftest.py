"""A tiny random model and a byte-level tokenizer, so perplexity can be checked exactly."""

from __future__ import annotations

import pytest
import torch


class ByteTokenizer:
    """Token = byte value + 2 (0: pad, 1: BOS); only what evaluation uses."""

    vocab_size = 258
    bos_id = 1
    add_bos = True

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [b + 2 for b in text.encode("utf-8")]
        return [self.bos_id, *ids] if add_special_tokens else ids


TEXT = ("Evaluation runs non-overlapping windows over a text and scores the second half of "
        "each window, as llama-perplexity does; this sentence repeats with small changes. ") * 3


def build(case: str):
    from forge_plugin_models.testing import hf_source, make_hf

    from forge_kernel.modeling import build_causal_lm
    from forge_kernel.plugins import get_host

    hf = make_hf(case, seed=3)
    backend = get_host().registry.create("backend", "cpu", threads=1, precision="exact")
    return hf, build_causal_lm(hf_source(hf), backend)


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def tiny(request):
    torch.manual_seed(0)
    return build(request.param)


@pytest.fixture()
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT + "\n", encoding="utf-8")
    return path
