"""Importance matrices: llama.cpp's imatrix files, read and written, and made from text.

An importance matrix gives, for each weight matrix (by GGUF tensor name), one value per input
column: the mean squared activation that column sees on calibration text. The k-quant and
legacy scale searches then weight each weight's error by it (:func:`formats.default_weights`).

Files we read (both as ``llama-imatrix`` writes them):

* **GGUF** (current llama.cpp): ``general.type = "imatrix"``, keys ``imatrix.datasets``,
  ``imatrix.chunk_count``, ``imatrix.chunk_size``; per matrix two F32 tensors,
  ``NAME.in_sum2`` (sums of squared activations, ``[n_mat, in]``) and ``NAME.counts`` (tokens
  per ``n_mat``). Importance = ``in_sum2 / counts``.
* **legacy .dat**: ``int32 n``, then per entry ``int32 len, name, int32 ncall, int32 nval,
  float32[nval]``, then the chunk count and dataset name (ignored). Importance =
  ``values / ncall``.

We write the GGUF form, so ``llama-quantize --imatrix`` accepts what ``forge quantize
--calibrate`` computes. Only the ratio between columns of one matrix changes a quantization
choice, so the two normalisations give the same files.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from forge_plugin_ggml_quant.formats import QuantizeError

SUMS, COUNTS = ".in_sum2", ".counts"


def load_imatrix(path: Path | str) -> dict[str, np.ndarray]:
    """Per-column importance (float32) by tensor name from a GGUF or legacy ``.dat`` file."""
    path = Path(path)
    if not path.is_file():
        raise QuantizeError(f"imatrix file {path} does not exist")
    with path.open("rb") as f:
        magic = f.read(4)
    try:
        out = _load_gguf(path) if magic == b"GGUF" else _load_dat(path)
    except (struct.error, ValueError, KeyError, UnicodeDecodeError) as exc:
        raise QuantizeError(f"{path}: not a readable imatrix file ({exc})") from None
    if not out:
        raise QuantizeError(f"{path}: the imatrix file has no entries")
    return out


def _load_gguf(path: Path) -> dict[str, np.ndarray]:
    import gguf

    reader = gguf.GGUFReader(path)
    tensors = {t.name: np.asarray(t.data, dtype=np.float64) for t in reader.tensors}
    out = {}
    for name, sums in tensors.items():
        if not name.endswith(SUMS):
            continue
        base = name[:-len(SUMS)]
        counts = tensors[base + COUNTS].reshape(-1)
        sums = sums.reshape(counts.shape[0], -1)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(counts[:, None] > 0, sums / counts[:, None], 0.0)
        out[base] = mean.reshape(-1).astype(np.float32)
    return out


def _load_dat(path: Path) -> dict[str, np.ndarray]:
    data = path.read_bytes()
    (n,), pos = struct.unpack_from("<i", data, 0), 4
    if not 0 < n < 1 << 20:
        raise ValueError(f"entry count {n}")
    out = {}
    for _ in range(n):
        (length,) = struct.unpack_from("<i", data, pos)
        name = data[pos + 4:pos + 4 + length].decode("utf-8")
        pos += 4 + length
        ncall, nval = struct.unpack_from("<ii", data, pos)
        pos += 8
        values = np.frombuffer(data, np.float32, nval, pos).astype(np.float64)
        if values.shape[0] != nval:
            raise ValueError(f"entry {name!r} is truncated")
        pos += 4 * nval
        out[name] = (values / ncall if ncall > 0 else values).astype(np.float32)
    return out


def save_imatrix(path: Path | str, sums: Mapping[str, np.ndarray], counts: Mapping[str, int],
                 dataset: str, chunks: int, chunk_size: int) -> Path:
    """Write llama.cpp's GGUF imatrix format (atomically: temp file, then rename)."""
    import os
    import uuid

    import gguf

    path = Path(path)
    temp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.partial"
    writer = gguf.GGUFWriter(temp, "")
    try:
        writer.add_type(gguf.GGUFType.IMATRIX)
        writer.add_array(gguf.Keys.IMatrix.DATASETS, [dataset])
        writer.add_uint32(gguf.Keys.IMatrix.CHUNK_COUNT, int(chunks))
        writer.add_uint32(gguf.Keys.IMatrix.CHUNK_SIZE, int(chunk_size))
        for name in sorted(sums):
            writer.add_tensor(name + SUMS, np.asarray(sums[name], np.float32).reshape(1, -1))
            writer.add_tensor(name + COUNTS, np.array([[float(counts[name])]], np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()
    return path


def calibrate(model: Path | str, text: Path | str, ctx: int | None = None,
              chunks: int | None = None, progress: Any = None):
    """Activation statistics of ``model`` on ``text`` through forge's engine
    (:func:`forge_plugin_eval.collect_activations`); needs forge-plugin-eval."""
    try:
        from forge_plugin_eval import EvalError, collect_activations
    except ImportError:
        raise QuantizeError("--calibrate runs the model with forge-plugin-eval: pip install "
                            "forge-plugin-eval") from None
    try:
        return collect_activations(model, text, ctx=ctx, chunks=chunks, progress=progress)
    except EvalError as exc:
        raise QuantizeError(f"calibration: {exc}") from None


def resolve_importance(model: Path, imatrix: Any = None, calibration: Any = None,
                       save_to: Path | None = None) -> tuple[dict[str, np.ndarray] | None,
                                                              str | None]:
    """The importance vectors a run uses and a label for its lineage: from an imatrix file or
    mapping, or computed from a calibration text (optionally saved to ``save_to``)."""
    if imatrix is not None and calibration is not None:
        raise QuantizeError("give an importance matrix or a calibration text, not both")
    if imatrix is not None:
        if isinstance(imatrix, Mapping):
            return {k: np.asarray(v, np.float32) for k, v in imatrix.items()}, "<mapping>"
        return load_imatrix(imatrix), str(Path(imatrix))
    if calibration is None:
        return None, None
    stats = calibrate(model, calibration)
    if save_to is not None:
        save_imatrix(save_to, stats.sums, stats.counts, stats.dataset, stats.chunks,
                     stats.chunk_size)
    return stats.importance(), f"calibration:{Path(calibration).name}"
