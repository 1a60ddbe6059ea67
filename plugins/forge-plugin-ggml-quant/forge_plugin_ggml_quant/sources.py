"""Quantization inputs: what to write (metadata) and each tensor's float32 values.

A GGUF file of any type is read with gguf-py: every key/value is carried over as stored and each
tensor is decoded with ``gguf.quants.dequantize``. A Hugging Face directory (f32/f16/bf16) goes
through forge's safetensors loader (canonical GGUF names, Gemma norms ``+1``) and gets the
metadata llama.cpp's converter writes (:mod:`hf_meta`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forge_plugin_ggml_quant.formats import QuantizeError

SKIPPED_KEYS = ("GGUF.", "general.architecture", "general.file_type",
                "general.quantization_version", "quantize.imatrix.")
"""Keys the writer sets itself (header fields, architecture) or we replace (file type, the
importance matrix a re-quantized file was made with)."""


@dataclass(slots=True)
class SourceTensor:
    """One tensor to convert: torch-order ``shape`` (row length last), stored type, decoder."""

    name: str
    shape: tuple[int, ...]
    qtype: str
    load: Callable[[], np.ndarray]
    """Float32 values as ``[rows, row_length]`` (1-D tensors: one row)."""

    @property
    def count(self) -> int:
        return int(np.prod(self.shape))


@dataclass(slots=True)
class KeyValue:
    key: str
    value: Any
    vtype: Any
    sub_type: Any = None


@dataclass(slots=True)
class QuantSource:
    """Everything the writer needs from a model."""

    path: Path
    kind: str
    """``gguf`` or ``safetensors``."""
    arch: str
    metadata: list[KeyValue]
    tensors: list[SourceTensor]
    size_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)

    def names(self) -> list[str]:
        return [t.name for t in self.tensors]


def open_source(path: Path) -> QuantSource:
    """A GGUF file or a safetensors model directory; anything else is a clear error."""
    path = Path(path)
    if not path.exists():
        raise QuantizeError(f"{path}: no such file or directory")
    if path.is_file():
        with open(path, "rb") as fh:
            magic = fh.read(4)
        if magic != b"GGUF":
            raise QuantizeError(f"{path}: unsupported source (not a GGUF file; give a .gguf "
                                f"file or a Hugging Face safetensors directory)")
        return _gguf_source(path)
    if (path / "config.json").is_file() and any(path.glob("*.safetensors")):
        from forge_plugin_ggml_quant.hf_meta import hf_source

        return hf_source(path)
    raise QuantizeError(f"{path}: unsupported source (a directory without config.json and "
                        f"*.safetensors files)")


def _gguf_source(path: Path) -> QuantSource:
    import gguf

    from forge_plugin_ggml_quant.gguf_read import read_gguf

    try:
        kvs, infos = read_gguf(path)
    except Exception as exc:  # noqa: BLE001 - struct/unicode/value errors of a bad file
        raise QuantizeError(f"{path}: unreadable GGUF ({type(exc).__name__}: {exc})") from None
    metadata = []
    arch = None
    for key, value, vtype, sub in kvs:
        if key == "general.architecture":
            arch = value
        if key.startswith(SKIPPED_KEYS):
            continue
        metadata.append(KeyValue(key, value, gguf.GGUFValueType(vtype),
                                 gguf.GGUFValueType(sub) if sub is not None else None))
    if arch is None:
        raise QuantizeError(f"{path}: GGUF without general.architecture")
    tensors = []
    for t in infos:
        shape = tuple(int(n) for n in reversed(t.dims))
        qtype = gguf.GGMLQuantizationType(t.ggml_type)
        tensors.append(SourceTensor(t.name, shape, qtype.name, _gguf_decoder(t, qtype, shape)))
    return QuantSource(path, "gguf", arch, metadata, tensors, path.stat().st_size)


def _gguf_decoder(t, qtype, shape: tuple[int, ...]) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import gguf

        try:
            values = gguf.quants.dequantize(t.data, qtype)
        except NotImplementedError as exc:
            raise QuantizeError(f"tensor {t.name!r}: cannot decode {qtype.name} "
                                f"({exc})") from None
        return np.asarray(values, dtype=np.float32).reshape(-1, shape[-1])

    return load


def iter_kv(source: QuantSource) -> Iterator[KeyValue]:
    yield from source.metadata
