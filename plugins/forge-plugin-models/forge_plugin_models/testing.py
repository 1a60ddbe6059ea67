"""Tiny random transformers models for tests (imports transformers; never used at runtime).

``make_hf(case)`` builds one of :data:`CASES` with randomized weights (norms too), and
``hf_source(model)`` presents its state dict as a forge :class:`ModelSource` in canonical form
(GGUF names, Gemma norms ``+1``) without going through any loader plugin, so architecture tests
do not depend on loaders. ``save_safetensors`` / ``write_gguf`` produce real files for loader
round trips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import transformers

from forge_kernel.interfaces.loader import ModelConfig, ModelSource, WeightTensor

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
    # What a GGUF can express: the fixed 5-local/1-global pattern, scale from head_dim.
    "gemma3-6": (transformers.Gemma3TextConfig, dict(
        num_hidden_layers=6, num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32,
        sliding_window=4)),
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




SPECIALS = ["<unk>", "<s>", "</s>"]
"""Ids 0, 1, 2 in every tiny tokenizer (BOS = 1, EOS = 2)."""
_CORPUS = ["the quick brown fox jumps over the lazy dog", "hello world, hello forge",
           "def f(x): return x + 1", "ein kleiner Test"] * 8


def save_safetensors(model, directory: Path) -> Path:
    """``save_pretrained`` (safetensors) plus a tiny byte-level BPE ``tokenizer.json``
    (Llama 3 / Qwen style, vocabulary <= the model's) so loaders that require a tokenizer work."""
    from tokenizers import ByteLevelBPETokenizer

    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_CORPUS, vocab_size=model.config.vocab_size, min_frequency=1,
                            special_tokens=SPECIALS, show_progress=False)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, unk_token="<unk>",
                                                bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(directory)
    return directory


_GGUF_ARCH = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3",
              "gemma3_text": "gemma3"}


def write_gguf(model, path: Path, qtype: str = "F32") -> Path:
    """Write a tiny transformers model as GGUF the way llama.cpp's converter does: llama.cpp
    metadata keys, q/k permuted for Llama, Llama 3.1 scaling as ``rope_freqs.weight``, a
    SentencePiece-style vocabulary with byte fallback. ``qtype`` ``F32`` or ``Q8_0`` (matrices).

    Gemma 3 files carry only what llama.cpp stores (sliding window; the layer pattern and
    ``query_pre_attn_scalar = head_dim`` are implied), so use the ``gemma3-6`` case. Returns
    ``path``."""
    import gguf

    cfg = model.config
    arch = _GGUF_ARCH[cfg.model_type]
    source = hf_source(model)
    c = source.config
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(f"tiny-{cfg.model_type}")
    writer.add_context_length(c.context_length)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_heads)
    writer.add_head_count_kv(c.num_kv_heads)
    writer.add_key_length(c.head_dim)
    writer.add_value_length(c.head_dim)
    writer.add_rope_dimension_count(c.head_dim)
    writer.add_rope_freq_base(c.rope_theta)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_vocab_size(c.vocab_size)
    if arch == "gemma3":
        writer.add_sliding_window(int(c.extra["sliding_window"]))
    scaling = c.rope_scaling or {}
    if scaling.get("rope_type") == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(scaling["factor"]))
    _add_sentencepiece_vocab(writer, c.vocab_size)
    quant = gguf.GGMLQuantizationType[qtype]
    for name, weight in source.tensors.items():
        data = np.asarray(weight.data, dtype=np.float32)
        if arch == "llama" and name.endswith(("attn_q.weight", "attn_k.weight")):
            heads = c.num_heads if "attn_q" in name else c.num_kv_heads
            data = _llama_cpp_permute(data, heads)
        if data.ndim == 2 and quant != gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, gguf.quants.quantize(data, quant), raw_dtype=quant)
        else:
            writer.add_tensor(name, data)
    if scaling.get("rope_type") == "llama3":
        writer.add_tensor("rope_freqs.weight", _llama3_rope_factors(c.head_dim, c.rope_theta,
                                                                     scaling))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_sentencepiece_vocab(writer, vocab_size: int) -> None:
    bytes_ = [f"<0x{b:02X}>" for b in range(256)]
    words = ["\u2581the", "\u2581a", "\u2581hello", "\u2581world", "\u2581test", "he", "ll", "o"]
    pieces = SPECIALS + bytes_ + words
    pieces += [f"\u2581w{i}" for i in range(vocab_size - len(pieces))]
    types = [2, 3, 3] + [6] * 256 + [1] * (vocab_size - 259)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(pieces)
    writer.add_token_scores([0.0] * 259 + [-float(i) for i in range(vocab_size - 259)])
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)


def _llama_cpp_permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's ``LlamaModel.permute``: HF rotate-half rows -> interleaved pairs."""
    return (w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def _llama3_rope_factors(head_dim: int, base: float, s: dict) -> np.ndarray:
    """llama.cpp's ``rope_freqs`` divisors for Llama 3.1 scaling (convert_hf_to_gguf.py)."""
    import math

    factor = float(s["factor"])
    low, high = float(s["low_freq_factor"]), float(s["high_freq_factor"])
    old = float(s["original_max_position_embeddings"])
    low_wavelen, high_wavelen = old / low, old / high
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    factors = []
    for freq in freqs.tolist():
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)
