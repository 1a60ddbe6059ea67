"""A Hugging Face safetensors directory as a :class:`~sources.QuantSource`, with the metadata
llama.cpp's ``convert_hf_to_gguf.py`` writes for Llama/Mistral, Qwen2/3 and Gemma 3.

Tensors come from forge's safetensors loader (canonical names; Gemma norms already ``+1``);
Llama's q/k rows are permuted to llama.cpp's interleaved RoPE layout, as the converter does.
The vocabulary is ``tokenizer.model`` (SentencePiece, ``llama`` tokenizer) or ``tokenizer.json``
(byte-level BPE, ``gpt2`` tokenizer); merges, special ids and the chat template go through
gguf-py's ``SpecialVocab``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from forge_plugin_ggml_quant.formats import QuantizeError
from forge_plugin_ggml_quant.sources import KeyValue, QuantSource, SourceTensor

GGUF_ARCH = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3",
             "gemma3": "gemma3", "gemma3_text": "gemma3"}
BPE_PRE = {"llama": "llama-bpe", "qwen2": "qwen2", "qwen3": "qwen2"}
"""Pre-tokenizer names by architecture (llama.cpp identifies them by a hash of sample output;
these are the names it finds for the released Llama 3 and Qwen tokenizers)."""


def hf_source(path: Path) -> QuantSource:
    import gguf

    from forge_kernel.errors import ForgeError
    from forge_kernel.modeling import open_model_source

    try:
        model = open_model_source(path, "safetensors")
    except ForgeError as exc:
        raise QuantizeError(f"{path}: unsupported source ({exc})") from None
    cfg = model.config
    arch = GGUF_ARCH.get(cfg.architecture)
    if arch is None:
        raise QuantizeError(f"{path}: no GGUF mapping for architecture {cfg.architecture!r} "
                            f"(supported: {', '.join(sorted(GGUF_ARCH))})")
    w = gguf.GGUFWriter(None, arch)
    w.add_name(str(model.metadata.get("name") or path.name))
    w.add_context_length(cfg.context_length)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_heads)
    w.add_head_count_kv(cfg.num_kv_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_theta)
    if arch == "gemma3":
        if cfg.extra.get("sliding_window"):
            w.add_sliding_window(int(cfg.extra["sliding_window"]))
    else:
        w.add_rope_dimension_count(cfg.head_dim)
        w.add_vocab_size(cfg.vocab_size)
    scaling = cfg.rope_scaling or {}
    if scaling.get("rope_type") == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(scaling["factor"]))
    elif scaling.get("rope_type") not in (None, "default", "llama3"):
        raise QuantizeError(f"{path}: rope scaling {scaling.get('rope_type')!r} is not supported")
    _add_vocab(w, path, arch, cfg.vocab_size)
    metadata = [KeyValue(k, v.value, v.type, v.sub_type) for k, v in w.kv_data[0].items()
                if k != "general.architecture"]
    tensors = [_tensor(t, arch, cfg) for t in model.tensors.values()]
    if scaling.get("rope_type") == "llama3":
        factors = _llama3_factors(cfg.head_dim, cfg.rope_theta, scaling)
        tensors.append(SourceTensor("rope_freqs.weight", factors.shape, "F32",
                                    lambda f=factors: f.reshape(1, -1)))
    size = sum(p.stat().st_size for p in path.glob("*.safetensors"))
    return QuantSource(path, "safetensors", arch, metadata, tensors, size)


def _tensor(weight, arch: str, cfg) -> SourceTensor:
    name, shape = weight.name, tuple(int(n) for n in weight.shape)

    def load() -> np.ndarray:
        values = weight.dequantize().numpy().astype(np.float32, copy=False)
        if arch == "llama" and name.endswith(("attn_q.weight", "attn_k.weight")):
            heads = cfg.num_heads if "attn_q" in name else cfg.num_kv_heads
            # rotate-half rows -> llama.cpp's interleaved pairs
            values = (values.reshape(heads, 2, values.shape[0] // heads // 2, -1)
                      .swapaxes(1, 2).reshape(values.shape))
        return np.ascontiguousarray(values).reshape(-1, shape[-1])

    return SourceTensor(name, shape, weight.qtype, load)


def _add_vocab(w, path: Path, arch: str, vocab_size: int) -> None:
    import gguf

    tokens: list[str | bytes]
    if (path / "tokenizer.model").is_file():
        vocab = gguf.SentencePieceVocab(path)
        entries = list(vocab.all_tokens())
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        tokens = [t for t, _, _ in entries]
        scores = [float(s) for _, s, _ in entries]
        types = [int(k) for _, _, k in entries]
    elif (path / "tokenizer.json").is_file():
        data = json.loads((path / "tokenizer.json").read_text())
        if data.get("model", {}).get("type") != "BPE":
            raise QuantizeError(f"{path}: tokenizer.json is not a BPE tokenizer")
        by_id = {i: t for t, i in data["model"]["vocab"].items()}
        types_by_id = {}
        for added in data.get("added_tokens", []):
            by_id[added["id"]] = added["content"]
            types_by_id[added["id"]] = (gguf.TokenType.CONTROL if added.get("special")
                                        else gguf.TokenType.USER_DEFINED)
        count = max(vocab_size, max(by_id) + 1)
        tokens = [by_id.get(i, f"[PAD{i}]") for i in range(count)]
        types = [int(types_by_id.get(i, gguf.TokenType.NORMAL if i in by_id
                                     else gguf.TokenType.UNUSED)) for i in range(count)]
        scores = None
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(BPE_PRE.get(arch, "default"))
    else:
        raise QuantizeError(f"{path}: no tokenizer.model or tokenizer.json to carry over")
    w.add_token_list(tokens)
    if scores is not None:
        w.add_token_scores(scores)
    w.add_token_types(types)
    gguf.SpecialVocab(path, load_merges=scores is None, n_vocab=len(tokens)).add_to_gguf(w)


def _llama3_factors(head_dim: int, base: float, s: dict) -> np.ndarray:
    """Llama 3.1 RoPE divisors, stored as ``rope_freqs.weight`` like the converter does."""
    import math

    factor = float(s["factor"])
    low, high = float(s["low_freq_factor"]), float(s["high_freq_factor"])
    old = float(s["original_max_position_embeddings"])
    out = []
    for i in range(0, head_dim, 2):
        wavelen = 2 * math.pi * base ** (i / head_dim)
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)
