"""End to end through :func:`build_engine` and the real plugins (safetensors loader, tokenizer,
backend, KV cache, scheduler): a tiny random Llama saved as a safetensors directory with a
trained byte-level BPE tokenizer, compared with transformers. The default Gemma model is in
``test_engine_gemma.py`` (exact, vs transformers) and ``test_engine_gemma_serving.py`` (the
default int8 weights under concurrency). Skips name the missing plugin.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
import torch
from engine_helpers import concurrent, cpu_weights, require, tokens

from forge_kernel.engine.builder import build_engine
from forge_kernel.engine.config import EngineConfig
from forge_kernel.engine.types import SamplingParams
from forge_kernel.plugins import get_host

require(("scheduler", "continuous", "forge-plugin-scheduler"))
registry = get_host().registry
KV = "paged" if "paged" in registry.names("kv_cache") else "naive"
GREEDY = SamplingParams(temperature=0.0, max_tokens=6, ignore_eos=True)


def needs_loader(name: str) -> None:
    if name not in registry.names("weight_loader"):
        pytest.skip(f"weight loader {name!r} is not installed")


def build(model, precision: str, **kw):
    """An engine whose cpu backend keeps weights ``exact`` (float32) or ``int8``."""
    with cpu_weights(precision):
        return build_engine(EngineConfig(model=model, kv_cache=KV, threads=2, max_model_len=256,
                                         max_prefill_tokens=64, **kw))


# -- a tiny Llama on disk (safetensors) -------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    needs_loader("safetensors")
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    path = tmp_path_factory.mktemp("tiny-llama")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog " * 5,
                             "hello world, streaming tokens one at a time"], trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>",
                                                eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(path)
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=96,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=256,
                                   bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    hf = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    hf.save_pretrained(path, safe_serialization=True)
    return path


def test_tiny_llama_safetensors_greedy_and_preemption(tiny_dir):
    import transformers

    hf = transformers.AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    engine = build(str(tiny_dir), "exact")
    prompts = [engine.tokenizer.encode(t) for t in
               ["the quick brown fox", "hello world", "lazy dog jumps", "one at a time"]]
    for ids in prompts:
        ref = hf.generate(torch.tensor([ids]), max_new_tokens=6, min_new_tokens=6,
                          do_sample=False)[0, len(ids):].tolist()
        assert tokens(engine, ids, GREEDY) == ref
    # 16 concurrent requests in a cache of 3 blocks x 16 tokens: preemption by recompute
    small = build(str(tiny_dir), "exact", num_blocks=3, block_size=16)
    alone = [tokens(engine, p, dataclasses.replace(GREEDY, max_tokens=12)) for p in prompts]
    together = asyncio.run(concurrent(small, prompts * 4,
                                      [dataclasses.replace(GREEDY, max_tokens=12)] * 16))
    assert together == alone * 4
    assert small.stats().num_preemptions > 0
    assert small.kv_cache.free_tokens() == small.kv_cache.capacity_tokens()
