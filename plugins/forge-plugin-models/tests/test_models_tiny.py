"""Tiny random-weight Llama / Mistral / Qwen2 / Qwen3 / Gemma 3 models built with transformers:
our float32 logits and greedy tokens must match transformers' own (eager attention, float32).

Here the architectures get their tensors straight from the Hugging Face state dict, renamed to
the canonical GGUF names (``hf_source``), so a failure points at the architecture code, not at a
loader. ``test_models_loaders.py`` repeats the comparison through the real loader plugins.

Tolerance: both sides run the same float32 math in a slightly different order (fused vs split
rotary, SDPA vs eager softmax), so differences are rounding only: measured max |diff| is about
1e-6 on logits of magnitude ~1-10. We allow 1e-4 absolute + 1e-4 relative, 100x the rounding
noise and far below what any real mistake (a wrong norm, RoPE base, mask or scale) produces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from forge_kernel.interfaces.model import ModelConfig, ModelSource, WeightTensor
from forge_kernel.modeling import build_causal_lm
from forge_kernel.plugins import get_host
from forge_kernel.testing.conformance.model_architecture import (
    check_causal_lm,
    greedy,
    naive_cache_factory,
    prefill,
)

TOL = {"rtol": 1e-4, "atol": 1e-4}
VOCAB = 300
PROMPTS = [[1, 17, 42, 5, 99, 230, 7], [1, 250, 3, 3, 3, 12, 88, 141, 9, 4, 77, 61, 200],
           [1, 8], [1, 299, 150, 42, 42, 0, 13, 21, 34, 55, 89]]

_COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
               initializer_range=0.1, attn_implementation="eager")

CASES: dict[str, tuple[type, dict]] = {
    "llama": (transformers.LlamaConfig, dict(tie_word_embeddings=False)),
    "llama3-rope": (transformers.LlamaConfig, dict(rope_parameters={
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 16})),
    "llama-linear-rope": (transformers.LlamaConfig, dict(rope_parameters={
        "rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0})),
    "mistral": (transformers.MistralConfig, dict(sliding_window=5, head_dim=16)),
    "qwen2": (transformers.Qwen2Config, dict(tie_word_embeddings=True)),
    "qwen3": (transformers.Qwen3Config, dict(head_dim=32, tie_word_embeddings=False)),
    "gemma3": (transformers.Gemma3TextConfig, dict(
        num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=24, sliding_window=4,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                         "full_attention": {"rope_type": "default", "rope_theta": 1e6}},
        final_logit_softcapping=5.0, attn_logit_softcapping=3.0)),
}

_LAYER_RENAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm", "input_layernorm": "attn_norm",
    "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}


def make_hf(case: str, seed: int = 0):
    """A random float32 transformers model; norm weights randomized too (they init to 1/0)."""
    cls, overrides = CASES[case]
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(
        cls(**{**_COMMON, **overrides}), dtype=torch.float32).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
    return model


def hf_source(model) -> ModelSource:
    """Canonical tensors (GGUF names, Gemma norms +1) and config from a transformers model."""
    cfg = model.config
    gemma = cfg.model_type == "gemma3_text"
    tensors = {}
    for name, value in model.state_dict().items():
        canon = _canonical(name, gemma)
        if canon is None or (canon == "output.weight" and cfg.tie_word_embeddings):
            continue
        data = value.detach().float().numpy().copy()
        if gemma and "norm" in canon:
            data = data + 1.0  # GGUF convention: the +1 is folded into the weight
        tensors[canon] = WeightTensor(canon, tuple(data.shape), "F32", data,
                                      lambda w: torch.from_numpy(np.array(w.data)))
    rope = dict(cfg.rope_parameters)
    if gemma:
        rope = dict(rope["full_attention"])
    extra = {}
    if gemma:
        extra = {"layer_types": [t.split("_")[0] for t in cfg.layer_types],
                 "sliding_window": cfg.sliding_window,
                 "query_pre_attn_scalar": cfg.query_pre_attn_scalar,
                 "rope_local_theta": cfg.rope_parameters["sliding_attention"]["rope_theta"],
                 "final_logit_softcapping": cfg.final_logit_softcapping,
                 "attn_logit_softcapping": cfg.attn_logit_softcapping}
    elif getattr(cfg, "sliding_window", None):
        extra = {"sliding_window": cfg.sliding_window}
    config = ModelConfig(
        architecture=cfg.model_type, vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size, num_layers=cfg.num_hidden_layers,
        num_heads=cfg.num_attention_heads, num_kv_heads=cfg.num_key_value_heads,
        head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
        context_length=cfg.max_position_embeddings, rms_norm_eps=cfg.rms_norm_eps,
        rope_theta=float(rope["rope_theta"]),
        rope_scaling=rope if rope.get("rope_type", "default") != "default" else None,
        tie_word_embeddings=cfg.tie_word_embeddings, extra=extra)
    return ModelSource(path=Path(f"<hf {cfg.model_type}>"), format="hf-memory", config=config,
                       tokenizer=None, tensors=tensors)


def _canonical(name: str, gemma: bool) -> str | None:
    if name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "model.norm.weight":
        return "output_norm.weight"
    if name == "lm_head.weight":
        return "output.weight"
    parts = name.split(".")
    if parts[:2] != ["model", "layers"]:
        return None
    layer, rest, kind = parts[2], ".".join(parts[3:-1]), parts[-1]
    if rest == "post_attention_layernorm":
        # Llama's is the pre-MLP norm; Gemma's is the post-attention sandwich norm.
        mapped = "post_attention_norm" if gemma else "ffn_norm"
    else:
        mapped = _LAYER_RENAMES[rest]
    return f"blk.{layer}.{mapped}.{kind}"


@pytest.fixture(scope="module")
def backend():
    return get_host().registry.create("backend", "cpu", threads=2, precision="exact")


@pytest.mark.parametrize("case", list(CASES))
def test_logits_and_greedy_match_transformers(case, backend):
    hf = make_hf(case)
    ours = build_causal_lm(hf_source(hf), backend)
    make_cache = naive_cache_factory(ours)
    for ids in PROMPTS:
        with torch.no_grad():
            ref = hf(torch.tensor([ids])).logits[0, -1]
        got = prefill(ours, make_cache(), ids)
        torch.testing.assert_close(got, ref, **TOL)
    ids = PROMPTS[1]
    with torch.no_grad():
        ref_tokens = hf.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False,
                                 min_new_tokens=12, pad_token_id=0)[0, len(ids):].tolist()
    assert greedy(ours, make_cache(), ids, 12, chunk_sizes=[5, len(ids) - 5]) == ref_tokens


@pytest.mark.parametrize("case", ["llama", "qwen2", "gemma3"])
def test_chunking_and_batching_invariants(case, backend):
    ours = build_causal_lm(hf_source(make_hf(case, seed=1)), backend)
    check_causal_lm(ours, naive_cache_factory(ours), PROMPTS, rtol=1e-5, atol=1e-5)


def test_missing_tensor_and_bad_shape_name_the_problem(backend):
    from forge_kernel.errors import ModelFormatError

    source = hf_source(make_hf("qwen3"))
    del source.tensors["blk.1.attn_k_norm.weight"]
    with pytest.raises(KeyError, match="blk.1.attn_k_norm.weight"):
        build_causal_lm(source, backend)
    source = hf_source(make_hf("llama"))
    w = source.tensors["blk.0.ffn_up.weight"]
    source.tensors["blk.0.ffn_up.weight"] = WeightTensor(w.name, (95, 64), "F32", w.data[:95],
                                                         w.decoder)
    with pytest.raises(ModelFormatError, match=r"blk.0.ffn_up.weight.*\(95, 64\).*\(96, 64\)"):
        build_causal_lm(source, backend)
