"""Writing the EXL2 directory atomically: everything goes to a hidden temporary directory next
to the destination, which is renamed into place only when complete. An error or an interrupt
(KeyboardInterrupt included) removes the temporary; nothing is ever left at ``output``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from forge_kernel.interfaces.loader import ModelSource
from forge_plugin_exl2.hf_names import hf_name, hf_prefix
from forge_plugin_exl2.pack import pack_linear


@contextmanager
def atomic_dir(output: Path) -> Iterator[Path]:
    """A temporary directory that becomes ``output`` when the block ends without error."""
    output = Path(output)
    if output.exists():
        raise FileExistsError(f"{output} already exists; choose another --output or remove it")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.parent / f".{output.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        os.rename(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def plain_tensors(source: ModelSource, quantized: set[str]) -> dict[str, np.ndarray]:
    """The tensors kept as floats under their Hugging Face names: norms in float32 (Gemma's
    ``+1`` taken off again, the HF convention), embeddings / an untied head in float16 (the
    head is not quantized: ``head_bits`` 16)."""
    arch = source.config.architecture
    gemma = arch.startswith("gemma3")
    out = {}
    for name, t in source.tensors.items():
        if name in quantized:
            continue
        value = t.dequantize().to(torch.float32).numpy()
        if len(t.shape) == 1:
            if gemma and name.endswith("norm.weight"):
                value = value - np.float32(1.0)
            out[hf_name(name, arch)] = np.ascontiguousarray(value, dtype=np.float32)
        else:
            out[hf_name(name, arch)] = np.ascontiguousarray(value, dtype=np.float16)
    return out


def save_tensors(directory: Path, tensors: dict[str, np.ndarray]) -> Path:
    from safetensors.numpy import save_file

    path = directory / "model.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt", "quantization": "exl2"})
    return path


def pack_all(source: ModelSource, layers, step: Callable[[str], None] | None = None
             ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Pack ``(name, QuantizedLinear, error)`` items (biases are plain tensors)."""
    arch = source.config.architecture
    tensors: dict[str, np.ndarray] = {}
    errors: dict[str, float] = {}
    for name, q, err in layers:
        prefix = hf_prefix(name, arch)
        tensors.update(pack_linear(prefix, q))
        errors[name] = err
    return tensors, errors
