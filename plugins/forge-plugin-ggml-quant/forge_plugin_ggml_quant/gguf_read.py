"""A lean GGUF reader for quantization sources: metadata and memory-mapped tensors.

gguf-py's ``GGUFReader`` builds a numpy view per item of every metadata array; for Gemma 3's
262k-token vocabulary (three arrays of 262k items) that took ~80% of a whole quantization run
(profiled). Here strings are decoded straight from the mapped bytes and numeric arrays read in
one ``frombuffer`` each. Values come back as ``fld.contents()`` would give them (``str``,
Python numbers, lists), ready for ``GGUFWriter.add_key_value``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
           11: "<q", 12: "<d"}
_NUMPY = {0: np.uint8, 1: np.int8, 2: np.uint16, 3: np.int16, 4: np.uint32, 5: np.int32,
          6: np.float32, 7: np.bool_, 10: np.uint64, 11: np.int64, 12: np.float64}
STRING, ARRAY = 8, 9


@dataclass(slots=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]
    """GGUF order (row length first)."""
    ggml_type: int
    data: np.ndarray
    """uint8 ``[rows, row_bytes]`` view of the mapped file."""


class _Cursor:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: np.ndarray) -> None:
        self.buf, self.pos = buf, 0

    def take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.take("<Q")
        s = bytes(self.buf[self.pos:self.pos + n]).decode("utf-8", errors="surrogateescape")
        self.pos += n
        return s

    def value(self, vtype: int) -> tuple[Any, int | None]:
        if vtype == STRING:
            return self.string(), None
        if vtype == ARRAY:
            itype, count = self.take("<I"), self.take("<Q")
            if itype in _NUMPY:
                dtype = np.dtype(_NUMPY[itype]).newbyteorder("<")
                arr = np.frombuffer(self.buf, dtype, count, self.pos)
                self.pos += count * dtype.itemsize
                return arr.tolist(), itype
            return [self.value(itype)[0] for _ in range(count)], itype
        return self.take(_SCALAR[vtype]), None


def read_gguf(path: Path) -> tuple[list[tuple[str, Any, int, int | None]], list[TensorInfo]]:
    """``(key, value, vtype, sub_type)`` per metadata entry and the tensors of a GGUF file."""
    import gguf

    mm = np.memmap(path, dtype=np.uint8, mode="r")
    cur = _Cursor(mm)
    magic, version = cur.take("<4s"), cur.take("<I")
    if magic != b"GGUF" or version not in (2, 3):
        raise ValueError(f"not a GGUF v2/v3 file (magic {magic!r}, version {version})")
    n_tensors, n_kv = cur.take("<Q"), cur.take("<Q")
    kvs = []
    for _ in range(n_kv):
        key = cur.string()
        vtype = cur.take("<I")
        value, sub = cur.value(vtype)
        kvs.append((key, value, vtype, sub))
    infos = []
    for _ in range(n_tensors):
        name = cur.string()
        dims = tuple(cur.take("<Q") for _ in range(cur.take("<I")))
        infos.append((name, dims, cur.take("<I"), cur.take("<Q")))
    align = next((int(v) for k, v, _, _ in kvs if k == "general.alignment"), 32)
    base = (cur.pos + align - 1) // align * align
    tensors = []
    for name, dims, ggml_type, offset in infos:
        block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ggml_type)]
        rows = int(np.prod(dims[1:])) if len(dims) > 1 else 1
        row_bytes = dims[0] // block * type_size
        start = base + offset
        if start + rows * row_bytes > mm.shape[0]:
            raise ValueError(f"tensor {name!r} runs past the end of the file (truncated?)")
        tensors.append(TensorInfo(name, dims, ggml_type,
                                  mm[start:start + rows * row_bytes].reshape(rows, row_bytes)))
    return kvs, tensors
