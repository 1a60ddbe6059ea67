"""Quantize a model file: plan every tensor's type, then stream the GGUF out tensor by tensor.

The whole plan is made (and every tensor checked against its format) before a byte is written,
so a model the format cannot hold fails fast. The file is written to a hidden temporary next to
the output and renamed into place only when complete; an error or Ctrl-C removes it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from forge_plugin_ggml_quant.formats import QuantizeError, block_format, quantize_rows
from forge_plugin_ggml_quant.mixes import MixPlanner, file_type
from forge_plugin_ggml_quant.sources import QuantSource, SourceTensor, open_source

QUANTIZATION_VERSION = 2
"""``general.quantization_version`` of the current k-quant/legacy layouts."""


@dataclass(slots=True)
class Summary:
    """What a run produced."""

    source: str
    output: Path
    file_type: str
    types: dict[str, int]
    """Tensor type -> tensor count."""
    source_bytes: int
    output_bytes: int
    parameters: int
    seconds: float
    imatrix: str | None = None
    tensor_types: dict[str, str] = field(default_factory=dict)

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.output_bytes / max(1, self.parameters)

    def describe(self) -> str:
        mb = 1024 * 1024
        mix = ", ".join(f"{k}: {v}" for k, v in sorted(self.types.items()))
        return (f"{self.output} ({self.file_type}): {self.source_bytes / mb:.1f} MiB -> "
                f"{self.output_bytes / mb:.1f} MiB, {self.bits_per_weight:.2f} bits/weight, "
                f"{self.seconds:.1f} s; tensors {mix}")


def _nbytes(t: SourceTensor, qtype: str) -> int:
    fmt = block_format(qtype)
    return t.count // fmt.block * fmt.nbytes


def _encode(t: SourceTensor, qtype: str, importance: dict[str, np.ndarray] | None) -> np.ndarray:
    values = t.load()
    fmt = block_format(qtype)
    if fmt.kernel is None:
        return quantize_rows(values, qtype)
    columns = None
    if importance is not None and fmt.weighted and t.name in importance:
        columns = importance[t.name]
    return quantize_rows(values, qtype, columns)


def quantize_file(
    source: Path | QuantSource,
    output: Path,
    qtype: str,
    imatrix: dict[str, np.ndarray] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    imatrix_name: str | None = None,
) -> Summary:
    """Write ``source`` (a GGUF file, a safetensors directory or an opened source) as GGUF of
    file type ``qtype`` at ``output``; ``progress(done, total, tensor_name)`` per tensor."""
    started = time.perf_counter()
    ftype = file_type(qtype)
    src = source if isinstance(source, QuantSource) else open_source(Path(source))
    planner = MixPlanner(ftype, src.names())
    plan = [(t, planner.choose(t.name, t.shape, t.qtype)) for t in src.tensors]
    output = Path(output)
    if output.is_dir():
        raise QuantizeError(f"{output} is a directory; give the output file name")
    output.parent.mkdir(parents=True, exist_ok=True)
    temp = output.parent / f".{output.name}.{uuid.uuid4().hex[:8]}.partial"
    try:
        _write(src, plan, ftype.file_type, temp, imatrix, progress, imatrix_name)
        os.replace(temp, output)
    except OSError as exc:
        raise QuantizeError(f"writing {output} failed: {exc.strerror or exc}; nothing was "
                            f"written") from exc
    finally:
        if temp.exists():
            temp.unlink()
    return Summary(
        source=str(src.path), output=output, file_type=ftype.name,
        types=dict(Counter(q for _, q in plan)), source_bytes=src.size_bytes,
        output_bytes=output.stat().st_size, parameters=sum(t.count for t, _ in plan),
        seconds=time.perf_counter() - started, imatrix=imatrix_name,
        tensor_types={t.name: q for t, q in plan})


def _write(src: QuantSource, plan, file_type_id: int, temp: Path, imatrix, progress,
           imatrix_name: str | None = None) -> None:
    import gguf

    writer = gguf.GGUFWriter(temp, src.arch)
    try:
        for kv in src.metadata:
            writer.add_key_value(kv.key, kv.value, kv.vtype, kv.sub_type)
        writer.add_quantization_version(QUANTIZATION_VERSION)
        writer.add_file_type(file_type_id)
        if imatrix:  # the keys llama-quantize writes, so tools see the file was imatrix-made
            writer.add_string("quantize.imatrix.file", imatrix_name or "<mapping>")
            writer.add_int32("quantize.imatrix.entries_count", len(imatrix))
        for t, qtype in plan:
            writer.add_tensor_info(t.name, t.shape, np.dtype(np.float32), _nbytes(t, qtype),
                                   raw_dtype=gguf.GGMLQuantizationType[qtype])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for done, (t, qtype) in enumerate(plan, 1):
            data = _encode(t, qtype, imatrix)
            writer.write_tensor_data(data)
            if progress is not None:
                progress(done, len(plan), t.name)
    finally:
        writer.close()
