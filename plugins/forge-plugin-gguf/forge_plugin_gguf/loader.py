"""The ``gguf`` weight loader: GGUF file -> :class:`ModelSource` in canonical form."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

from forge_kernel.errors import ModelFormatError
from forge_kernel.interfaces.loader import (
    ModelConfig,
    ModelSource,
    WeightLoader,
    WeightTensor,
    tensor_summary,
)
from forge_plugin_gguf.dequant import SUPPORTED_TYPES, dequantize
from forge_plugin_gguf.reader import MAGIC, GGUFFile, read_gguf

PERMUTED_QK_ARCHS = frozenset({"llama", "mistral"})
"""Architectures whose q/k rows llama.cpp's converter permutes (interleaved RoPE)."""
REQUIRED_KEYS = ("context_length", "embedding_length", "block_count", "feed_forward_length",
                 "attention.head_count")
"""``{arch}.`` metadata keys without which no config can be built."""
GEMMA3_SLIDING_PATTERN = 6
"""Gemma 3: every 6th layer is global, the others use the sliding window (llama.cpp, HF)."""


def decode(weight: WeightTensor) -> torch.Tensor:
    """float32 copy of a stored tensor, in ``weight.shape`` (our bit-exact dequantizers)."""
    return dequantize(weight.data, weight.qtype).reshape(weight.shape)


def _unpermute_rows(rows: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation (per head: interleaved pairs -> rotate-half), as
    transformers' ``reverse_permute`` does.

    Applied eagerly to the stored rows, not in the decoder: backends read quantized blocks
    straight from ``WeightTensor.data`` (and dequantize row slices), so the stored form itself must
    be in canonical layout. Whole rows of blocks move, which is exact for every type; only the
    (small) q/k tensors of Llama-family files are copied out of the memory map.
    """
    n = rows.shape[0]
    if n % (2 * heads):
        raise ValueError(f"{n} rows do not split into {heads} heads of rotary pairs")
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
        # An unreadable tensor type is the more useful message when metadata is also lacking.
        for info in gguf.tensors:
            if info.qtype not in SUPPORTED_TYPES:
                raise ModelFormatError(path, f"tensor {info.name!r} has type {info.qtype}, "
                                             f"which forge cannot read (supported: "
                                             f"{', '.join(sorted(SUPPORTED_TYPES))})")
        arch = str(_require(gguf, "general.architecture"))
        for key in REQUIRED_KEYS:
            _require(gguf, f"{arch}.{key}")
        tensors = self._tensors(gguf, arch)
        from forge_plugin_tokenizers import from_gguf

        tokenizer = from_gguf(path, meta)
        config = _config(gguf, arch, tensors, tokenizer.vocab_size)
        source = ModelSource(path=path, format="gguf", config=config, tokenizer=tokenizer,
                             tensors=tensors, metadata=_metadata(gguf, arch, tensors))
        gguf.release_header()
        return source

    def _tensors(self, gguf: GGUFFile, arch: str) -> dict[str, WeightTensor]:
        heads = {"attn_q": gguf.metadata.get(f"{arch}.attention.head_count"),
                 "attn_k": gguf.metadata.get(f"{arch}.attention.head_count_kv")
                 or gguf.metadata.get(f"{arch}.attention.head_count")}
        out: dict[str, WeightTensor] = {}
        for info in gguf.tensors:
            data = gguf.tensor_bytes(info)
            kind = info.name.split(".")[-2] if info.name.count(".") >= 2 else ""
            if arch in PERMUTED_QK_ARCHS and kind in heads and info.name.endswith(".weight"):
                try:
                    data = _unpermute_rows(data, int(heads[kind]))
                except ValueError as exc:
                    raise ModelFormatError(gguf.path, f"tensor {info.name!r}: {exc}") from None
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
            layer_types=_gemma3_layer_types(meta.get(f"{arch}.attention.sliding_window_pattern"),
                                            layers),
            rope_local_theta=10000.0,
            # llama.cpp scales queries by 1/sqrt(key_length) (HF's query_pre_attn_scalar = 256
            # equals key_length for every size but 27B, whose GGUF says so explicitly).
            query_pre_attn_scalar=float(meta.get(f"{arch}.attention.query_pre_attn_scalar",
                                                 head_dim)),
            final_logit_softcapping=_opt_float(meta.get(f"{arch}.final_logit_softcapping")),
            attn_logit_softcapping=_opt_float(meta.get(f"{arch}.attn_logit_softcapping")),
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


def _gemma3_layer_types(pattern: Any, layers: int) -> list[str]:
    """``"sliding"``/``"full"`` per layer. Gemma 3 GGUFs carry no per-layer flags: llama.cpp
    (``set_swa_pattern(6)``) and transformers (``sliding_window_pattern=6``) both make layer ``i``
    global iff ``(i + 1) % 6 == 0``. A per-layer boolean array (newer converters: true = sliding)
    or an integer period in the file wins."""
    if pattern is not None and not isinstance(pattern, (int, np.integer)):
        flags = [bool(x) for x in pattern]
        if len(flags) == layers:
            return ["sliding" if f else "full" for f in flags]
    period = int(pattern) if isinstance(pattern, (int, np.integer)) and pattern > 0 \
        else GEMMA3_SLIDING_PATTERN
    return ["full" if (i + 1) % period == 0 else "sliding" for i in range(layers)]


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _metadata(gguf: GGUFFile, arch: str, tensors: dict[str, WeightTensor]) -> dict[str, Any]:
    meta = gguf.metadata
    return {
        "name": meta.get("general.name"),
        "license": meta.get("general.license"),
        "architecture": arch,
        "chat_template": meta.get("tokenizer.chat_template"),
        "file_type": int(meta["general.file_type"]) if "general.file_type" in meta else None,
        **tensor_summary(tensors),
        "file_size": gguf.path.stat().st_size,
        "gguf_version": gguf.version,
    }
