"""End to end through :func:`build_engine` and the real plugins (loaders, tokenizer, backend,
KV cache, scheduler): the default Gemma 3 270M GGUF and a tiny random Llama saved as a
safetensors directory, compared with transformers.

Expensive fixtures (engines, transformers oracles) are module-scoped; generations are a few
tokens. Skips name the missing plugin.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import pytest
import torch

from forge_kernel.engine.async_engine import AsyncEngine
from forge_kernel.engine.builder import build_engine
from forge_kernel.engine.config import EngineConfig
from forge_kernel.engine.types import SamplingParams
from forge_kernel.plugins import get_host

registry = get_host().registry
if "continuous" not in registry.names("scheduler"):
    pytest.skip("forge-plugin-scheduler is not installed", allow_module_level=True)
KV = "paged" if "paged" in registry.names("kv_cache") else "naive"
GREEDY = SamplingParams(temperature=0.0, max_tokens=6, ignore_eos=True)


def needs_loader(name: str) -> None:
    if name not in registry.names("weight_loader"):
        pytest.skip(f"weight loader {name!r} is not installed")


def tokens(engine, prompt, params=GREEDY) -> list[int]:
    return [t for d in engine.generate(prompt, params) for t in d.token_ids]


async def concurrent(engine, prompts, params_list):
    aeng = AsyncEngine(engine)
    aeng.start()

    async def one(i):
        out = []
        async for d in aeng.generate(f"r{i}", prompts[i], params_list[i]):
            out.extend(d.token_ids)
        return out

    try:
        return await asyncio.gather(*(one(i) for i in range(len(prompts))))
    finally:
        await aeng.shutdown()


def build(model, precision: str, **kw):
    """An engine whose cpu backend keeps weights ``exact`` (float32) or ``int8``."""
    old = os.environ.get("FORGE_CPU_WEIGHTS")
    os.environ["FORGE_CPU_WEIGHTS"] = precision
    try:
        config = EngineConfig(model=model, kv_cache=KV, threads=2, max_model_len=256,
                              max_prefill_tokens=64, **kw)
        return build_engine(config)
    finally:
        if old is None:
            os.environ.pop("FORGE_CPU_WEIGHTS", None)
        else:
            os.environ["FORGE_CPU_WEIGHTS"] = old


# -- the default model -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def gemma_path() -> Path:
    needs_loader("gguf")
    from forge_kernel.engine.builder import resolve_model_path

    return resolve_model_path(None)


@pytest.fixture(scope="module")
def gemma(gemma_path):
    return build(None, "int8")


PROMPTS = ["The capital of France is", "def fibonacci(n):", "1, 2, 3, 4,", "Hello",
           "Water boils at", "The quick brown fox", "Once upon a time", "import numpy as"]


def test_gemma_greedy_matches_transformers(gemma_path):
    engine = build(None, "exact")
    ids = engine.tokenizer.encode(PROMPTS[0])
    hf = __import__("transformers").AutoModelForCausalLM.from_pretrained(
        str(gemma_path.parent), gguf_file=gemma_path.name, dtype=torch.float32).eval()
    ref = hf.generate(torch.tensor([ids]), max_new_tokens=6, min_new_tokens=6,
                      do_sample=False)[0, len(ids):].tolist()
    assert tokens(engine, ids) == ref
    del hf


def test_gemma_16_concurrent_batch_invariance(gemma):
    prompts = [gemma.tokenizer.encode(p) for p in PROMPTS * 2]
    params = dataclasses.replace(GREEDY, max_tokens=4)
    alone = [tokens(gemma, p, params) for p in prompts[:8]]
    together = asyncio.run(concurrent(gemma, prompts, [params] * 16))
    assert together[:8] == alone and together[8:] == alone
    assert gemma.kv_cache.usage() == 0.0


def test_gemma_seed_and_stop_string_streaming(gemma):
    ids = gemma.tokenizer.encode(PROMPTS[6])
    seeded = SamplingParams(temperature=0.9, top_k=40, max_tokens=5, seed=3, ignore_eos=True)
    first = tokens(gemma, ids, seeded)
    others = [dataclasses.replace(seeded, seed=None) for _ in range(4)]
    others[2] = seeded
    assert asyncio.run(concurrent(gemma, [ids] * 4, others))[2] == first
    full = "".join(d.text for d in gemma.generate(ids, dataclasses.replace(GREEDY,
                                                                             max_tokens=8)))
    stop = full.strip()[2:6] if len(full.strip()) >= 6 else full.strip()
    deltas = list(gemma.generate(ids, dataclasses.replace(GREEDY, max_tokens=8, stop=[stop])))
    text = "".join(d.text for d in deltas)
    assert stop not in text and full.startswith(text) and deltas[-1].finish_reason == "stop"


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
        assert tokens(engine, ids) == ref
    # 16 concurrent requests in a cache of 3 blocks x 16 tokens: preemption by recompute
    small = build(str(tiny_dir), "exact", num_blocks=3, block_size=16)
    alone = [tokens(engine, p, dataclasses.replace(GREEDY, max_tokens=12)) for p in prompts]
    together = asyncio.run(concurrent(small, prompts * 4,
                                      [dataclasses.replace(GREEDY, max_tokens=12)] * 16))
    assert together == alone * 4
    assert small.stats().num_preemptions > 0
    assert small.kv_cache.free_tokens() == small.kv_cache.capacity_tokens()
