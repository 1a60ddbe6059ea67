"""A fast, memory-mapped reader of GGUF headers.

gguf-py's ``GGUFReader`` builds a Python object per array element, which takes ~10 s for a
262k-token vocabulary; this reader walks the header once with ``struct`` and returns numeric
arrays as zero-copy numpy views, so opening a model costs well under a second. The type tables
(value types, quantization block sizes) are GGML's, copied here: importing gguf-py for them cost
every model load ~7 MB of RSS and 50 ms (it imports sentencepiece, yaml, json, logging ...).
"""

from __future__ import annotations

import mmap
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from forge_kernel.errors import ModelFormatError

MAGIC = b"GGUF"
STRING, ARRAY = 8, 9
"""GGUF metadata value types that are not scalars (``gguf.GGUFValueType``)."""
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
            11: "<q", 12: "<d"}
"""Scalar value type id -> struct format (UINT8, INT8, ..., FLOAT32, BOOL, UINT64, INT64,
FLOAT64)."""
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}
"""GGML type id -> (name, values per block, bytes per block), as gguf-py's
``GGMLQuantizationType`` / ``GGML_QUANT_SIZES`` (a test checks they agree)."""
_NUMPY = {t: np.dtype(fmt) for t, fmt in _SCALARS.items()}
_FLOAT_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}


@dataclass(slots=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    """Torch order (GGUF stores dimensions innermost first)."""
    qtype: str
    offset: int
    """Absolute byte offset in the file."""
    nbytes: int


@dataclass(slots=True)
class GGUFFile:
    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo]
    data: np.memmap
    header_bytes: int = 0
    """Where the tensor data starts (header: metadata and tensor infos)."""

    def release_header(self) -> None:
        """Unmap the header's resident pages (the 262k vocabulary strings of Gemma 3: ~7 MB of
        RSS) once metadata and tokenizer are built. The mapping is read-only and shared, so a
        later read of a metadata array pages the same bytes back in."""
        length = self.header_bytes - self.header_bytes % mmap.PAGESIZE
        if sys.platform.startswith("linux") and length and isinstance(self.data.base, mmap.mmap):
            self.data.base.madvise(mmap.MADV_DONTNEED, 0, length)

    def tensor_bytes(self, info: TensorInfo) -> np.ndarray:
        """The stored form: a typed ``[rows, cols]`` array for float types, else ``uint8``
        ``[rows, bytes_per_row]`` blocks (1-D tensors stay 1-D)."""
        raw = self.data[info.offset:info.offset + info.nbytes]
        rows = int(np.prod(info.shape[:-1])) if len(info.shape) > 1 else None
        if info.qtype in _FLOAT_DTYPES:
            array = raw.view(_FLOAT_DTYPES[info.qtype])
            return array.reshape(rows, -1) if rows else array
        return raw.reshape(rows, -1) if rows else raw


class _Cursor:
    def __init__(self, path: Path, buffer: memoryview) -> None:
        self.path, self.buf, self.pos = path, buffer, 0

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise ModelFormatError(self.path, f"truncated header (needed {size} bytes at offset "
                                              f"{self.pos}, file has {len(self.buf)})")
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

    def string(self) -> str:
        length = self.unpack("<Q")
        end = self.pos + length
        if end > len(self.buf):
            raise ModelFormatError(self.path, f"truncated header (string of {length} bytes at "
                                              f"offset {self.pos})")
        text = bytes(self.buf[self.pos:end]).decode("utf-8", errors="replace")
        self.pos = end
        return text

    def value(self, kind: int) -> Any:
        if kind == STRING:
            return self.string()
        if kind == ARRAY:
            item_kind, count = self.unpack("<I"), self.unpack("<Q")
            if item_kind in _NUMPY:
                dtype = _NUMPY[item_kind]
                end = self.pos + count * dtype.itemsize
                if end > len(self.buf):
                    raise ModelFormatError(self.path, "truncated header (array overruns file)")
                array = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
                self.pos = end
                return array
            return [self.value(item_kind) for _ in range(count)]
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        raise ModelFormatError(self.path, f"unknown metadata value type {kind}")


def read_gguf(path: Path) -> GGUFFile:
    """Parse the header of ``path``; raises :class:`ModelFormatError` naming the problem."""
    path = Path(path)
    try:
        data = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as exc:
        raise ModelFormatError(path, f"cannot open ({exc})") from None
    if data.shape[0] < 24 or bytes(data[:4]) != MAGIC:
        raise ModelFormatError(path, "not a GGUF file (wrong magic bytes; expected 'GGUF')")
    cur = _Cursor(path, memoryview(data))
    cur.pos = 4
    version = cur.unpack("<I")
    if version not in (2, 3):
        raise ModelFormatError(path, f"unsupported GGUF version {version} (supported: 2, 3)")
    n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        metadata[key] = cur.value(cur.unpack("<I"))
    infos: list[tuple[str, tuple[int, ...], int, int]] = []
    for _ in range(n_tensors):
        name = cur.string()
        dims = tuple(cur.unpack("<Q") for _ in range(cur.unpack("<I")))
        infos.append((name, dims, cur.unpack("<I"), cur.unpack("<Q")))
    alignment = int(metadata.get("general.alignment", 32))
    base = -(-cur.pos // alignment) * alignment
    tensors = [_tensor_info(path, name, dims, type_id, base + rel, data.shape[0])
               for name, dims, type_id, rel in infos]
    return GGUFFile(path, version, metadata, tensors, data, base)


def _tensor_info(path: Path, name: str, dims: tuple[int, ...], type_id: int, offset: int,
                 file_size: int) -> TensorInfo:
    try:
        qtype, block, type_size = GGML_TYPES[type_id]
    except KeyError:
        raise ModelFormatError(path, f"tensor {name!r} has unknown GGML type id "
                                     f"{type_id}") from None
    count = int(np.prod(dims)) if dims else 1
    if dims and dims[0] % block:
        raise ModelFormatError(path, f"tensor {name!r}: row of {dims[0]} values is not a "
                                     f"multiple of the {qtype} block size {block}")
    nbytes = count // block * type_size
    if offset + nbytes > file_size:
        raise ModelFormatError(path, f"truncated file: tensor {name!r} ends at byte "
                                     f"{offset + nbytes} but the file has {file_size} bytes")
    return TensorInfo(name, tuple(reversed(dims)), qtype, offset, nbytes)
