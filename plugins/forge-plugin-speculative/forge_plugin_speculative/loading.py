"""Loading a draft model for ``--speculative draft:MODEL``: any model the engine can load,
on the target's backend, with its own KV cache of the engine's kind."""

from __future__ import annotations

import dataclasses
from typing import Any

from forge_kernel.engine.builder import default_kv_budget, resolve_model_path
from forge_kernel.interfaces.kv_cache import KVCacheConfig
from forge_kernel.modeling import build_causal_lm, open_model_source
from forge_kernel.plugins import get_host
from forge_plugin_speculative.draft_model import DraftModelProposer, check_vocab


def load_draft(name: str, config: Any, target: Any, tokenizer: Any,
               backend: Any) -> DraftModelProposer:
    """Load ``name`` (a path or a model name) and check it shares the target's tokenizer."""
    path = resolve_model_path(name)
    source = open_model_source(path, None)
    model = build_causal_lm(source, backend)
    check_vocab(tokenizer, source.tokenizer, int(target.config.vocab_size),
                int(model.config.vocab_size), name)
    spec = model.kv_cache_spec()
    spec = dataclasses.replace(spec, max_model_len=min(spec.max_model_len,
                                                       target.kv_cache_spec().max_model_len))
    # No prefix caching: draft KV lives only as long as its sequence.
    kv_config = KVCacheConfig(block_size=config.block_size, enable_prefix_caching=False,
                              memory_budget_bytes=default_kv_budget(spec.bytes_per_token,
                                                                    spec.max_model_len))
    kv_cache = get_host().registry.create("kv_cache", config.kv_cache, spec, kv_config)
    return DraftModelProposer(model, kv_cache)
