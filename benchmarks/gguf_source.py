"""Fallback: a :class:`ModelSource` for a Gemma 3 GGUF, parsed here with a lean header reader.

Used by the benchmark only when no weight-loader plugin (forge-plugin-gguf) is installed.
gguf-py's ``GGUFReader`` builds numpy objects for every metadata item (~700 MB of RSS for
Gemma's 262k-token vocabulary), which would dominate the peak-RSS measurement; this reader
skips arrays and memory-maps the tensor data, as llama.cpp does.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

from forge_kernel.interfaces.loader import ModelConfig, ModelSource, WeightTensor

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}


class _Cursor:
    def __init__(self, mm: np.memmap) -> None:
        self.mm, self.pos = mm, 0

    def take(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        value = struct.unpack_from("<" + fmt, self.mm, self.pos)
        self.pos += size
        return value[0] if len(value) == 1 else value

    def string(self) -> str:
        n = self.take("Q")
        s = bytes(self.mm[self.pos:self.pos + n]).decode("utf-8", "replace")
        self.pos += n
        return s

    def value(self, vtype: int, keep: bool):
        if vtype == 8:
            return self.string()
        if vtype == 9:
            itype, count = self.take("I"), self.take("Q")
            if itype in _SCALARS:  # skip fixed-size arrays in one step
                self.pos += count * struct.calcsize(_SCALARS[itype])
            else:
                for _ in range(count):
                    self.value(itype, False)
            return None
        return self.take(_SCALARS[vtype])


def _decode(weight: WeightTensor) -> torch.Tensor:
    import gguf

    qtype = gguf.GGMLQuantizationType[weight.qtype]
    values = gguf.quants.dequantize(np.asarray(weight.data), qtype)
    return torch.from_numpy(np.array(values, dtype=np.float32)).reshape(weight.shape)


def gemma3_source(path: Path) -> ModelSource:
    """Config + memory-mapped tensors of a Gemma 3 GGUF (no tokenizer: the benchmark feeds ids)."""
    import gguf

    mm = np.memmap(path, mode="r")
    cur = _Cursor(mm)
    magic, _version, n_tensors, n_kv = cur.take("4sIQQ")
    if magic != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    meta = {}
    for _ in range(n_kv):
        key = cur.string()
        meta[key] = cur.value(cur.take("I"), True)
    infos = []
    for _ in range(n_tensors):
        name = cur.string()
        dims = [cur.take("Q") for _ in range(cur.take("I"))]
        infos.append((name, dims, cur.take("I"), cur.take("Q")))
    align = int(meta.get("general.alignment") or 32)
    base = (cur.pos + align - 1) // align * align
    tensors = {}
    for name, dims, ggml_type, offset in infos:
        qtype = gguf.GGMLQuantizationType(ggml_type)
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        shape = tuple(int(d) for d in reversed(dims))  # torch order
        rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        row_bytes = shape[-1] // block * type_size
        raw = mm[base + offset: base + offset + rows * row_bytes]
        if qtype.name in ("F32", "F16"):
            data = raw.view(np.float32 if qtype.name == "F32" else np.float16).reshape(shape)
        else:
            data = raw.reshape(rows, row_bytes) if len(shape) > 1 else raw
        tensors[name] = WeightTensor(name, shape, qtype.name, data, _decode)
    if meta.get("general.architecture") != "gemma3":
        raise ValueError(f"{path}: the fallback source only reads gemma3 files")
    g = lambda k: meta["gemma3." + k]  # noqa: E731
    cfg = ModelConfig(
        architecture="gemma3", vocab_size=tensors["token_embd.weight"].shape[0],
        hidden_size=int(g("embedding_length")), intermediate_size=int(g("feed_forward_length")),
        num_layers=int(g("block_count")), num_heads=int(g("attention.head_count")),
        num_kv_heads=int(g("attention.head_count_kv")), head_dim=int(g("attention.key_length")),
        context_length=int(g("context_length")),
        rms_norm_eps=float(g("attention.layer_norm_rms_epsilon")),
        rope_theta=float(g("rope.freq_base")),
        tie_word_embeddings="output.weight" not in tensors,
        extra={"sliding_window": int(g("attention.sliding_window")),
               "sliding_window_pattern": 6, "rope_local_theta": 10000.0,
               "query_pre_attn_scalar": int(g("attention.key_length"))},
    )
    return ModelSource(path=Path(path), format="gguf", config=cfg, tokenizer=None, tensors=tensors)
