"""The ``gguf`` weight loader: GGUF file -> :class:`ModelSource` in canonical form."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from forge_kernel.errors import ModelFormatError
from forge_kernel.interfaces.model import ModelConfig, ModelSource, WeightLoader, WeightTensor
from forge_plugin_gguf.reader import MAGIC, GGUFFile, read_gguf

SUPPORTED_TYPES = frozenset({"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
                             "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"})
PERMUTED_QK_ARCHS = frozenset({"llama", "mistral"})
"""Architectures whose q/k rows llama.cpp's converter permutes (interleaved RoPE)."""
GEMMA3_SLIDING_PATTERN = 6
"""Gemma 3: every 6th layer is global, the others use the sliding window (llama.cpp, HF)."""


def decode(weight: WeightTensor) -> torch.Tensor:
    """float32 copy of a stored tensor (gguf-py's vectorized dequantizers for block types)."""
    data = np.asarray(weight.data)
    if weight.qtype == "F32":
        values = np.array(data, dtype=np.float32)
    elif weight.qtype == "F16":
        values = data.astype(np.float32)
    elif weight.qtype == "BF16":
        values = (data.astype(np.uint32) << 16).view(np.float32)
    else:
        from gguf import GGMLQuantizationType, quants

        values = quants.dequantize(data, GGMLQuantizationType[weight.qtype])
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).reshape(weight.shape)


def _unpermute_rows(rows: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation (per head: interleaved pairs -> rotate-half)."""
    n = rows.shape[0]
    half = n // heads // 2
    order = np.arange(n).reshape(heads, half, 2).swapaxes(1, 2).reshape(n)
    return np.ascontiguousarray(rows[order])


class GGUFLoader(WeightLoader):
    """Memory-maps GGUF files; tensors stay in their stored (quantized) form until a backend
    asks for them."""

    name = "gguf"

    def can_load(self, path: Path) -> bool:
        try:
            with open(path, "rb") as fh:
                return fh.read(4) == MAGIC
        except OSError:
            return False

    def load(self, path: Path) -> ModelSource:
        path = Path(path)
        gguf = read_gguf(path)
        meta = gguf.metadata
        arch = _require(gguf, "general.architecture")
        tensors = self._tensors(gguf, arch)
        from forge_plugin_tokenizers import from_gguf

        tokenizer = from_gguf(path, meta)
        config = _config(gguf, arch, tensors, tokenizer.vocab_size)
        return ModelSource(path=path, format="gguf", config=config, tokenizer=tokenizer,
                           tensors=tensors, metadata=_metadata(gguf, arch, tensors))

    def _tensors(self, gguf: GGUFFile, arch: str) -> dict[str, WeightTensor]:
        heads = {"attn_q": gguf.metadata.get(f"{arch}.attention.head_count"),
                 "attn_k": gguf.metadata.get(f"{arch}.attention.head_count_kv")
                 or gguf.metadata.get(f"{arch}.attention.head_count")}
        out: dict[str, WeightTensor] = {}
        for info in gguf.tensors:
            if info.qtype not in SUPPORTED_TYPES:
                raise ModelFormatError(gguf.path, f"tensor {info.name!r} has type {info.qtype}, "
                                                  f"which forge cannot read (supported: "
                                                  f"{', '.join(sorted(SUPPORTED_TYPES))})")
            data = gguf.tensor_bytes(info)
            kind = info.name.split(".")[-2] if info.name.count(".") >= 2 else ""
            if arch in PERMUTED_QK_ARCHS and kind in heads and info.name.endswith(".weight"):
                data = _unpermute_rows(data, int(heads[kind]))
            out[info.name] = WeightTensor(info.name, info.shape, info.qtype, data, decode)
        return out


def _require(gguf: GGUFFile, key: str) -> Any:
    if key not in gguf.metadata:
        raise ModelFormatError(gguf.path, f"required metadata key {key!r} is missing")
    return gguf.metadata[key]


def _config(gguf: GGUFFile, arch: str, tensors: dict[str, WeightTensor],
            vocab_size: int) -> ModelConfig:
    meta = gguf.metadata

    def key(name: str, default: Any = None) -> Any:
        full = f"{arch}.{name}"
        return meta.get(full, default) if default is not None else _require(gguf, full)

    hidden, heads = int(key("embedding_length")), int(key("attention.head_count"))
    head_dim = int(meta.get(f"{arch}.attention.key_length", hidden // heads))
    layers = int(key("block_count"))
    scaling = None
    if meta.get(f"{arch}.rope.scaling.type") not in (None, "none"):
        scaling = {"rope_type": meta[f"{arch}.rope.scaling.type"],
                   "factor": float(meta.get(f"{arch}.rope.scaling.factor", 1.0))}
        if f"{arch}.rope.scaling.original_context_length" in meta:
            scaling["original_max_position_embeddings"] = int(
                meta[f"{arch}.rope.scaling.original_context_length"])
    extra: dict[str, Any] = {}
    if f"{arch}.attention.sliding_window" in meta:
        extra["sliding_window"] = int(meta[f"{arch}.attention.sliding_window"])
    if arch == "gemma3":
        extra.update(
            layer_types=["full" if (i + 1) % GEMMA3_SLIDING_PATTERN == 0 else "sliding"
                         for i in range(layers)],
            rope_local_theta=10000.0,
            query_pre_attn_scalar=float(head_dim),
            final_logit_softcapping=meta.get(f"{arch}.final_logit_softcapping"),
        )
    embd = tensors.get("token_embd.weight")
    return ModelConfig(
        architecture=arch,
        vocab_size=int(embd.shape[0]) if embd is not None else vocab_size,
        hidden_size=hidden,
        intermediate_size=int(key("feed_forward_length")),
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=int(meta.get(f"{arch}.attention.head_count_kv", heads)),
        head_dim=head_dim,
        context_length=int(key("context_length")),
        rms_norm_eps=float(meta.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)),
        rope_theta=float(meta.get(f"{arch}.rope.freq_base", 10000.0)),
        rope_scaling=scaling,
        tie_word_embeddings="output.weight" not in tensors,
        extra=extra,
    )


def _metadata(gguf: GGUFFile, arch: str, tensors: dict[str, WeightTensor]) -> dict[str, Any]:
    meta = gguf.metadata
    quant: dict[str, dict[str, int]] = {}
    for t in tensors.values():
        entry = quant.setdefault(t.qtype, {"count": 0, "bytes": 0})
        entry["count"] += 1
        entry["bytes"] += t.nbytes
    return {
        "name": meta.get("general.name"),
        "license": meta.get("general.license"),
        "architecture": arch,
        "chat_template": meta.get("tokenizer.chat_template"),
        "file_type": int(meta["general.file_type"]) if "general.file_type" in meta else None,
        "quantization": quant,
        "parameters": sum(int(np.prod(t.shape)) for t in tensors.values()),
        "file_size": gguf.path.stat().st_size,
        "gguf_version": gguf.version,
    }
