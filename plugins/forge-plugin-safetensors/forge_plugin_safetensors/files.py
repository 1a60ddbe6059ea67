"""Memory-mapped reading of ``.safetensors`` files and sharded checkpoints.

The format is an 8-byte little-endian header length, a JSON header (name -> dtype, shape, byte
range) and the raw tensor bytes. We parse the header ourselves and hand out zero-copy numpy views
of one ``np.memmap`` per file: unlike ``safe_open(framework="numpy")`` this also covers bfloat16
(viewed as ``uint16``, the GGML ``BF16`` storage), and every byte range is checked against the
file size up front, so a truncated download is an error naming the file and tensor.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forge_kernel.errors import ModelFormatError

DTYPES: dict[str, tuple[str, np.dtype]] = {
    "F32": ("F32", np.dtype("<f4")),
    "F16": ("F16", np.dtype("<f2")),
    "BF16": ("BF16", np.dtype("<u2")),
}
"""safetensors dtype -> (GGML type name, numpy storage dtype)."""
MAX_HEADER = 100 * 1024 * 1024


@dataclass(slots=True)
class StoredTensor:
    """One tensor of one file: its GGML type name and zero-copy storage."""

    name: str
    file: Path
    qtype: str
    shape: tuple[int, ...]
    data: np.ndarray


def read_safetensors(path: Path) -> list[StoredTensor]:
    """All tensors of one ``.safetensors`` file as memory-mapped views."""
    try:
        mm = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as exc:
        raise ModelFormatError(path, f"cannot open ({exc})") from None
    size = mm.shape[0]
    if size < 8:
        raise ModelFormatError(path, "truncated file: no safetensors header")
    (length,) = struct.unpack("<Q", bytes(mm[:8]))
    if length > MAX_HEADER or 8 + length > size:
        raise ModelFormatError(path, f"not a safetensors file or truncated (header of {length} "
                                     f"bytes, file has {size})")
    try:
        header = json.loads(bytes(mm[8:8 + length]))
    except ValueError as exc:
        reason = f"not a safetensors file (header is not JSON: {exc})"
        raise ModelFormatError(path, reason) from None
    if not isinstance(header, dict):
        raise ModelFormatError(path, "not a safetensors file (header is not a JSON object)")
    base = 8 + length
    out = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        out.append(_tensor(path, mm, base, name, info))
    return out


def _tensor(path: Path, mm: np.memmap, base: int, name: str, info: dict) -> StoredTensor:
    try:
        dtype, shape, (begin, end) = info["dtype"], tuple(int(d) for d in info["shape"]), \
            info["data_offsets"]
    except (KeyError, TypeError, ValueError):
        raise ModelFormatError(path, f"tensor {name!r}: malformed header entry {info!r}") from None
    if dtype not in DTYPES:
        raise ModelFormatError(path, f"tensor {name!r} has dtype {dtype}, which forge cannot "
                                     f"read (supported: {', '.join(DTYPES)})")
    qtype, np_dtype = DTYPES[dtype]
    count = int(np.prod(shape)) if shape else 1
    if end - begin != count * np_dtype.itemsize:
        raise ModelFormatError(path, f"tensor {name!r}: {end - begin} bytes for shape {shape} "
                                     f"of {dtype}")
    if base + end > mm.shape[0]:
        raise ModelFormatError(path, f"truncated file: tensor {name!r} ends at byte "
                                     f"{base + end} but the file has {mm.shape[0]} bytes")
    data = mm[base + begin:base + end].view(np_dtype).reshape(shape)
    return StoredTensor(name, path, qtype, shape, data)


def checkpoint_files(directory: Path) -> list[Path]:
    """The weight files of a model directory: the shards named by
    ``model.safetensors.index.json`` when present, else every ``*.safetensors`` file."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelFormatError(index, f"invalid shard index ({exc})") from None
        files = [directory / name for name in dict.fromkeys(weight_map.values())]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ModelFormatError(index, f"shard(s) missing from the directory: "
                                          f"{', '.join(missing)}")
        return files
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise ModelFormatError(directory, "no *.safetensors weight files in the directory")
    return files
