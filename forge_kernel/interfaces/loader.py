"""Weight loaders: a model file becomes a :class:`ModelSource`; the canonical tensor conventions
every loader converts to are in docs/plugins/interfaces.md."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

    from forge_kernel.interfaces.tokenizer import Tokenizer


@dataclass(slots=True)
class ModelConfig:
    """Architecture-neutral hyperparameters. Architecture-specific values live in ``extra``
    (for Gemma 3: ``sliding_window``, ``sliding_window_pattern``, ``rope_local_theta``,
    ``query_pre_attn_scalar``, ``final_logit_softcapping``, ...)."""

    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    context_length: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    tie_word_embeddings: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class WeightTensor:
    """One tensor of a model file, still in its stored (possibly quantized) form.

    ``data`` is the raw storage, usually memory-mapped: a typed array for float types, a
    ``uint8`` array of quantized blocks otherwise. ``qtype`` is the GGML type name (``F32``,
    ``F16``, ``BF16``, ``Q8_0``, ``Q4_K``, ...). ``shape`` is the logical shape in torch order.
    """

    name: str
    shape: tuple[int, ...]
    qtype: str
    data: np.ndarray
    decoder: Callable[[WeightTensor], torch.Tensor]

    def dequantize(self) -> torch.Tensor:
        """Return the tensor as a new float32 torch tensor of ``shape``."""
        return self.decoder(self)

    @property
    def nbytes(self) -> int:
        """Bytes the stored form occupies."""
        return int(self.data.nbytes)

    def storage_key(self) -> tuple:
        """Identity of the stored bytes, so that a backend gives a tied embedding and LM head
        (one tensor, or two views of one array) a single prepared copy."""
        try:
            address = self.data.__array_interface__["data"][0]
        except (AttributeError, KeyError, TypeError):
            address = id(self.data)
        return (self.name, self.qtype, tuple(self.shape), address)


@dataclass(slots=True)
class ModelSource:
    """A loaded model file: everything an architecture needs to build a runnable model."""

    path: Path
    format: str
    config: ModelConfig
    tokenizer: Tokenizer
    tensors: Mapping[str, WeightTensor]
    metadata: dict[str, Any] = field(default_factory=dict)
    """Human-facing facts: ``name``, ``license``, ``quantization`` (type -> tensor count),
    ``parameters``, ``generation`` (default sampling values), ``chat_template``."""

    def tensor(self, name: str) -> WeightTensor:
        """The tensor ``name``; a :class:`KeyError` names the missing tensor and the file."""
        try:
            return self.tensors[name]
        except KeyError:
            raise KeyError(f"{self.path}: tensor {name!r} missing from the model file") from None

    def close(self) -> None:
        """Release file handles / memory maps. Idempotent."""


def tensor_summary(tensors: Mapping[str, WeightTensor]) -> dict[str, Any]:
    """The ``quantization`` (type -> ``count``, ``bytes``) and ``parameters`` entries of
    :attr:`ModelSource.metadata`, which every loader reports the same way."""
    quant: dict[str, dict[str, int]] = {}
    for t in tensors.values():
        entry = quant.setdefault(t.qtype, {"count": 0, "bytes": 0})
        entry["count"] += 1
        entry["bytes"] += t.nbytes
    return {"quantization": quant,
            "parameters": sum(int(math.prod(t.shape)) for t in tensors.values())}


class WeightLoader(ABC):
    """Reads one model file format."""

    name: str

    @abstractmethod
    def can_load(self, path: Path) -> bool:
        """Cheap sniff (magic bytes, ``config.json``); never raises for foreign files."""

    @abstractmethod
    def load(self, path: Path) -> ModelSource:
        """Open ``path``. Raises :class:`forge_kernel.errors.ModelFormatError` naming the file
        and the problem for truncated files, wrong magic, unsupported tensor types, unknown
        architectures or a missing tokenizer."""
