"""Tiny random models (forge_plugin_models.testing) run by the real engine, cpu backend and
KV caches, with a piece tokenizer (id ``i`` is the text ``<i>``, so stop strings can span
tokens)."""

from __future__ import annotations

import dataclasses

import pytest

from forge_kernel.engine.engine import LLMEngine
from forge_kernel.interfaces.kv_cache import KVCacheConfig
from forge_kernel.interfaces.scheduler import SchedulerConfig
from forge_kernel.modeling import build_causal_lm
from forge_kernel.plugins import get_host
from forge_kernel.testing.tokenizer import PieceTokenizer

pytest.importorskip("transformers")
testing = pytest.importorskip("forge_plugin_models.testing")
registry = get_host().registry
for kind, name in (("backend", "cpu"), ("scheduler", "continuous"), ("kv_cache", "paged")):
    if name not in registry.names(kind):
        pytest.skip(f"{kind} {name!r} is not installed", allow_module_level=True)

VOCAB, EOS = testing.VOCAB, 2




_MODELS: dict = {}


def tiny_model(case: str = "llama", seed: int = 0):
    """A tiny random model of ``case`` (cached per process: building costs a second)."""
    key = (case, seed)
    if key not in _MODELS:
        import torch

        torch.set_num_threads(1)
        backend = registry.create("backend", "cpu", threads=1, precision="exact")
        _MODELS[key] = build_causal_lm(testing.hf_source(testing.make_hf(case, seed)), backend)
    return _MODELS[key]


def make_cache(model, kv: str = "paged", num_blocks: int = 64, max_model_len: int = 200,
               **config):
    spec = dataclasses.replace(model.kv_cache_spec(), max_model_len=max_model_len)
    return registry.create("kv_cache", kv, spec,
                           KVCacheConfig(block_size=8, num_blocks=num_blocks, **config))


def make_engine(model, speculator=None, kv: str = "paged", num_blocks: int = 64,
                max_batch_size: int = 64, max_model_len: int = 200,
                max_prefill_tokens: int = 64) -> LLMEngine:
    cache = make_cache(model, kv, num_blocks, max_model_len)
    sched = registry.create("scheduler", "continuous",
                            SchedulerConfig(max_batch_size=max_batch_size,
                                            max_prefill_tokens=max_prefill_tokens,
                                            max_model_len=max_model_len), cache)
    return LLMEngine(model, PieceTokenizer(), cache, sched, max_model_len=max_model_len,
                     model_name="tiny", speculator=speculator)


def run_all(engine, requests: dict[str, tuple[list[int], object]]) -> dict[str, list]:
    """Submit every ``id -> (prompt, params)`` at once, step until idle; deltas per id."""
    for rid, (prompt, params) in requests.items():
        engine.add_request(rid, prompt, params)
    out: dict[str, list] = {rid: [] for rid in requests}
    while engine.has_unfinished():
        for rid, delta in engine.step():
            if isinstance(delta, Exception):
                raise delta
            out[rid].append(delta)
    return out


def token_ids(deltas) -> list[int]:
    return [t for d in deltas for t in d.token_ids]
