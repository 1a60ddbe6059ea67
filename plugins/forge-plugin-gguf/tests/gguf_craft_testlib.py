"""Small GGUF files written with gguf-py's ``GGUFWriter``, for the loader tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np

TOKENS = ["<unk>", "<s>", "</s>", "▁hello", "▁world", "▁", "h", "e", "l", "o", "w", "r", "d"]
HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, LAYERS = 64, 4, 2, 16, 96, 2


def llama_permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py ``LlamaModel.permute`` (HF rotate-half -> interleaved)."""
    return (w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def tiny_tensors(
    seed: int = 0, vocab: int = len(TOKENS), tied: bool = True
) -> dict[str, np.ndarray]:
    """HF-layout float32 weights of a tiny Llama-shaped model, keyed by canonical name."""
    rng = np.random.default_rng(seed)

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    out = {"token_embd.weight": r(vocab, HIDDEN), "output_norm.weight": r(HIDDEN)}
    if not tied:
        out["output.weight"] = r(vocab, HIDDEN)
    for i in range(LAYERS):
        out |= {
            f"blk.{i}.attn_norm.weight": r(HIDDEN),
            f"blk.{i}.attn_q.weight": r(HEADS * HEAD_DIM, HIDDEN),
            f"blk.{i}.attn_k.weight": r(KV_HEADS * HEAD_DIM, HIDDEN),
            f"blk.{i}.attn_v.weight": r(KV_HEADS * HEAD_DIM, HIDDEN),
            f"blk.{i}.attn_output.weight": r(HIDDEN, HEADS * HEAD_DIM),
            f"blk.{i}.ffn_norm.weight": r(HIDDEN),
            f"blk.{i}.ffn_gate.weight": r(FFN, HIDDEN),
            f"blk.{i}.ffn_up.weight": r(FFN, HIDDEN),
            f"blk.{i}.ffn_down.weight": r(HIDDEN, FFN),
        }
    return out


def write(path: Path, arch: str = "llama", tensors: dict[str, np.ndarray] | None = None,
          qtype: str = "F32", skip_keys: tuple[str, ...] = (), tokenizer: bool = True,
          extra_meta: dict[str, Any] | None = None, permute: bool = True) -> Path:
    """Write a tiny model as llama.cpp would (q/k permuted for Llama); 2-D tensors in ``qtype``
    (quantized with gguf-py), 1-D ones F32. ``skip_keys`` leaves ``{arch}.`` keys out."""
    tensors = tiny_tensors() if tensors is None else tensors
    w = gguf.GGUFWriter(str(path), arch)
    meta: dict[str, Any] = {
        "context_length": 128, "embedding_length": HIDDEN, "block_count": LAYERS,
        "feed_forward_length": FFN, "attention.head_count": HEADS,
        "attention.head_count_kv": KV_HEADS, "attention.key_length": HEAD_DIM,
        "attention.value_length": HEAD_DIM, "attention.layer_norm_rms_epsilon": 1e-5,
        "rope.freq_base": 500000.0,
    } | (extra_meta or {})
    for key, value in meta.items():
        if key in skip_keys:
            continue
        full = f"{arch}.{key}"
        if isinstance(value, bool):
            w.add_bool(full, value)
        elif isinstance(value, int):
            w.add_uint32(full, value)
        elif isinstance(value, float):
            w.add_float32(full, value)
        else:
            w.add_string(full, value)
    w.add_name("tiny test model")
    if tokenizer:
        w.add_tokenizer_model("llama")
        w.add_token_list(TOKENS)
        w.add_token_scores([0.0, 0.0, 0.0, -1.0, -2.0, -3.0] + [-5.0] * (len(TOKENS) - 6))
        w.add_token_types([2, 3, 3] + [1] * (len(TOKENS) - 3))
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
    quant = gguf.GGMLQuantizationType[qtype]
    for name, data in tensors.items():
        if permute and arch == "llama" and name.endswith(("attn_q.weight", "attn_k.weight")):
            data = llama_permute(data, HEADS if "attn_q" in name else KV_HEADS)
        if data.ndim == 2 and quant != gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, gguf.quants.quantize(data, quant), raw_dtype=quant)
        else:
            w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
