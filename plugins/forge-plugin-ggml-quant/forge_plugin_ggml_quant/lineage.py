"""After a ``forge quantize`` run: the summary line and the model-store entry with lineage.

The output is registered *by reference* (the store's manifest points at the written file) and
only after the quantizer returned, so a failed or interrupted run never lists a model: the
quantizer's own temp-then-rename already guarantees no partial file exists either.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _parameters(path: Path) -> int:
    from forge_kernel.modeling import open_model_source

    source = open_model_source(path)
    try:
        total = 0
        for t in source.tensors.values():
            count = 1
            for n in t.shape:
                count *= int(n)
            total += count
        return total
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def summarize(quantizer: Any, source: Path, written: Path, seconds: float) -> dict[str, Any]:
    """Sizes, bits per weight, time and tensor types of a finished run (``text``: one line)."""
    ggml = getattr(quantizer, "last_summary", None)
    if ggml is not None:
        parameters, types = ggml.parameters, dict(ggml.types)
    else:
        from forge_kernel.errors import ForgeError

        try:  # weights of the source: the output's format may have no loader installed
            parameters = _parameters(source)
        except ForgeError:
            parameters = _parameters(written)
        types = {}
    before, after = _size(source), _size(written)
    bpw = 8.0 * after / max(1, parameters)
    mix = ", ".join(f"{k}: {v}" for k, v in sorted(types.items()))
    text = (f"{written}: {before / MIB:.1f} MiB -> {after / MIB:.1f} MiB, {bpw:.2f} bits/weight "
            f"({parameters:,} weights), {seconds:.1f} s" + (f"; tensors {mix}" if mix else ""))
    return {"text": text, "source_bytes": before, "output_bytes": after,
            "bits_per_weight": round(bpw, 4), "seconds": round(seconds, 2), "types": types,
            "file_type": getattr(ggml, "file_type", None)}


def register_output(name: str, source: Path, written: Path, method: str,
                    summary: dict[str, Any], imatrix: Path | None = None,
                    calibration: Path | None = None):
    """Add ``written`` to the model store under ``name`` with its lineage; returns the record."""
    try:
        from forge_plugin_store.pull import describe_model
        from forge_plugin_store.store import ModelStore
    except ImportError:
        from forge_kernel.errors import ForgeError

        raise ForgeError("the output was written but not stored: install forge-plugin-store "
                         "or pass --no-store") from None
    lineage = {
        "source": str(source.resolve()),
        "method": method,
        "type": summary.get("file_type") or "",
        "types": summary.get("types") or {},
        "imatrix": (str(Path(imatrix).resolve()) if imatrix is not None
                    else f"calibration:{Path(calibration).resolve()}" if calibration is not None
                    else None),
        "bits_per_weight": summary["bits_per_weight"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    target = written.resolve()
    return ModelStore().add(name, str(source.resolve()), lambda _staging: target,
                            describe_model, lineage=lineage)
