"""Weight loaders: a model file becomes a :class:`ModelSource`; the canonical tensor conventions
every loader converts to are in docs/plugins/interfaces.md."""

from __future__ import annotations

import math
import weakref
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
    """Architecture-neutral hyperparameters; architecture-specific ones (Gemma 3's
    ``sliding_window``, ...) live in ``extra``."""

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
    """One tensor as stored: ``data`` (often memory-mapped; ``uint8`` blocks when quantized),
    ``qtype`` the GGML type name (``F16``, ``Q4_K``...), ``shape`` logical, in torch order."""

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
        """Identity of the stored bytes (a tied embedding and LM head get one prepared copy)."""
        try:
            address = self.data.__array_interface__["data"][0]
        except (AttributeError, KeyError, TypeError):
            address = id(self.data)
        return (self.name, self.qtype, tuple(self.shape), address)


class PreparedWeights:
    """A backend's prepared form of each stored tensor, so a tied embedding and LM head share one.

    Holds neither the forms nor the sources: an entry lives while its form does, and one whose
    source array died is never returned (its address may since hold another model's tensor)."""

    def __init__(self) -> None:
        self._entries: dict[tuple, tuple[Callable[[], object], weakref.ref]] = {}

    def get(self, weight: WeightTensor, variant: str = "") -> Any | None:
        """The form put for this ``weight.data`` object (and ``variant``), else ``None``."""
        entry = self._entries.get((*weight.storage_key(), variant))
        if entry is None or entry[0]() is not weight.data:
            return None
        return entry[1]()

    def put(self, weight: WeightTensor, prepared: Any, variant: str = "") -> None:
        """Remember ``prepared`` (weak-referenceable) as the form of ``weight``."""
        key = (*weight.storage_key(), variant)

        def forget(ref: weakref.ref) -> None:
            if self._entries.get(key, (None, None))[1] is ref:
                del self._entries[key]

        try:
            source = weakref.ref(weight.data)
        except TypeError:  # not weak-referenceable: hold it (it is the model's own storage)
            source = lambda data=weight.data: data  # noqa: E731
        self._entries[key] = (source, weakref.ref(prepared, forget))


@dataclass(slots=True)
class ModelSource:
    """A loaded model file: everything an architecture needs to build a runnable model."""

    path: Path
    format: str
    config: ModelConfig
    tokenizer: Tokenizer
    tensors: Mapping[str, WeightTensor]
    metadata: dict[str, Any] = field(default_factory=dict)
    """``name``, ``license``, ``quantization``, ``parameters``, ``generation``, chat template."""

    def tensor(self, name: str) -> WeightTensor:
        """The tensor ``name``; a :class:`KeyError` names the missing tensor and the file."""
        try:
            return self.tensors[name]
        except KeyError:
            raise KeyError(f"{self.path}: tensor {name!r} missing from the model file") from None

    def close(self) -> None:
        """Release file handles / memory maps. Idempotent."""


def tensor_summary(tensors: Mapping[str, WeightTensor]) -> dict[str, Any]:
    """:attr:`ModelSource.metadata`'s ``quantization`` (type -> count, bytes) and ``parameters``."""
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
        """Open ``path``; :class:`~forge_kernel.errors.ModelFormatError` names file and problem."""
