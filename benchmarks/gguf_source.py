"""Fallback: a :class:`ModelSource` for a Gemma 3 GGUF read with gguf-py directly.

Used by the benchmark only when no weight-loader plugin (forge-plugin-gguf) is installed. It
keeps just the tensors' memory-mapped data and drops gguf-py's reader, whose per-token metadata
objects take ~700 MB for Gemma's 262k vocabulary.
"""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import torch

from forge_kernel.interfaces.model import ModelConfig, ModelSource, WeightTensor


def _decode(weight: WeightTensor) -> torch.Tensor:
    import gguf

    values = gguf.quants.dequantize(np.asarray(weight.data), gguf.GGMLQuantizationType[weight.qtype])
    return torch.from_numpy(np.array(values, dtype=np.float32)).reshape(weight.shape)


def gemma3_source(path: Path) -> ModelSource:
    """Config + tensors of a Gemma 3 GGUF (no tokenizer: the benchmark feeds token ids)."""
    import gguf

    reader = gguf.GGUFReader(path)
    meta = {k: f.contents() for k, f in reader.fields.items() if k.startswith("gemma3.")}
    if reader.fields["general.architecture"].contents() != "gemma3":
        raise ValueError(f"{path}: the fallback source only reads gemma3 files")
    tensors = {}
    for t in reader.tensors:
        shape = tuple(int(s) for s in reversed(t.shape.tolist()))
        tensors[t.name] = WeightTensor(t.name, shape, t.tensor_type.name, t.data, _decode)
    vocab = tensors["token_embd.weight"].shape[0]
    del reader
    gc.collect()
    cfg = ModelConfig(
        architecture="gemma3", vocab_size=vocab,
        hidden_size=int(meta["gemma3.embedding_length"]),
        intermediate_size=int(meta["gemma3.feed_forward_length"]),
        num_layers=int(meta["gemma3.block_count"]),
        num_heads=int(meta["gemma3.attention.head_count"]),
        num_kv_heads=int(meta["gemma3.attention.head_count_kv"]),
        head_dim=int(meta["gemma3.attention.key_length"]),
        context_length=int(meta["gemma3.context_length"]),
        rms_norm_eps=float(meta["gemma3.attention.layer_norm_rms_epsilon"]),
        rope_theta=float(meta["gemma3.rope.freq_base"]),
        tie_word_embeddings="output.weight" not in tensors,
        extra={"sliding_window": int(meta["gemma3.attention.sliding_window"]),
               "sliding_window_pattern": 6, "rope_local_theta": 10000.0,
               "query_pre_attn_scalar": int(meta["gemma3.attention.key_length"])},
    )
    return ModelSource(path=Path(path), format="gguf", config=cfg, tokenizer=None, tensors=tensors)
