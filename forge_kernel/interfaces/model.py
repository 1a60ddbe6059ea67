"""Model files, tokenizers and architectures.

A :class:`WeightLoader` turns a path into a :class:`ModelSource` (config, tokenizer, tensors). A
:class:`ModelArchitecture` turns a source plus a :class:`~forge_kernel.interfaces.backend.Backend`
into a runnable :class:`CausalLM`.

**Canonical tensor conventions** (every loader converts to these, every architecture relies on
them):

* names are GGUF-style: ``token_embd.weight``, ``blk.{i}.attn_q.weight``,
  ``blk.{i}.ffn_down.weight``, ``output_norm.weight``, ``output.weight`` (absent when
  embeddings are tied);
* matrices are ``[out_features, in_features]`` (torch ``nn.Linear`` order);
* query/key projections are in Hugging Face layout (rotary embedding applied with "rotate half");
  the GGUF loader undoes llama.cpp's q/k permutation for Llama-family files;
* Gemma RMSNorm weights already include the ``+1`` offset (the GGUF convention); the safetensors
  loader adds it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

    from forge_kernel.interfaces.backend import Backend
    from forge_kernel.interfaces.kv_cache import KVCache, KVCacheSpec


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


class Tokenizer(ABC):
    """Text <-> token ids for one model."""

    vocab_size: int
    bos_id: int | None
    eos_ids: frozenset[int]
    add_bos: bool
    chat_template: str | None

    @abstractmethod
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``; with ``add_special_tokens`` a BOS is prepended when the model
        expects one. Special-token strings in ``text`` (``<start_of_turn>``) map to their ids."""

    @abstractmethod
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids``."""

    @abstractmethod
    def id_to_piece(self, token_id: int) -> str:
        """The vocabulary entry of one id, as stored (for logprobs and debugging)."""

    @abstractmethod
    def is_special(self, token_id: int) -> bool:
        """True for control tokens (BOS, EOS, turn markers) that are hidden from output."""

    @abstractmethod
    def detokenizer(self, prompt_ids: Sequence[int] = ()) -> IncrementalDetokenizer:
        """A fresh streaming decoder; ``prompt_ids`` give it left context (for leading spaces)."""

    @abstractmethod
    def apply_chat_template(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **kwargs: Any
    ) -> str:
        """Render ``messages`` with the model's chat template (jinja2), or a documented fallback
        when the model has none."""


class IncrementalDetokenizer(ABC):
    """Streams text as tokens arrive without ever emitting a broken UTF-8 sequence."""

    @abstractmethod
    def add(self, token_id: int) -> str:
        """Feed one token; return the newly completed text (may be empty while a multi-byte
        character is still incomplete)."""

    @abstractmethod
    def flush(self) -> str:
        """Return whatever is pending at end of stream (invalid bytes become U+FFFD)."""


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


@dataclass(slots=True)
class SequenceChunk:
    """One sequence's slice of a :class:`ForwardBatch`."""

    seq_id: int
    start_pos: int
    """Tokens of this sequence already in the KV cache (the chunk's first position)."""
    num_tokens: int
    """New tokens in this step (a whole prompt, a prefill chunk, or 1 when decoding)."""
    needs_logits: bool = True
    """Whether the last token of the chunk needs next-token logits (false for inner prefill
    chunks)."""


@dataclass(slots=True)
class ForwardBatch:
    """Tokens of several sequences flattened into one step (continuous batching)."""

    token_ids: torch.Tensor  # [T] int64, chunks concatenated in order
    positions: torch.Tensor  # [T] int64, absolute position of each token in its sequence
    chunks: list[SequenceChunk]

    def iter_spans(self) -> Iterator[tuple[SequenceChunk, int, int]]:
        """Yield ``(chunk, begin, end)`` row ranges of each chunk within the flat batch."""
        begin = 0
        for chunk in self.chunks:
            yield chunk, begin, begin + chunk.num_tokens
            begin += chunk.num_tokens


class CausalLM(ABC):
    """A built model ready to run forward passes on a backend."""

    config: ModelConfig

    @abstractmethod
    def kv_cache_spec(self) -> KVCacheSpec:
        """Shape of the KV cache this model needs (layers, kv heads, head dim, dtype)."""

    @abstractmethod
    def forward(self, batch: ForwardBatch, kv_cache: KVCache) -> torch.Tensor:
        """Run ``batch``, writing its keys/values into ``kv_cache``.

        Returns float32 logits ``[num_chunks_needing_logits, vocab_size]``, one row per chunk
        with ``needs_logits`` (in batch order), for that chunk's last token.
        """

    def embed(self, batch: ForwardBatch, kv_cache: KVCache) -> torch.Tensor:
        """Mean-pooled final hidden states ``[num_chunks, hidden_size]`` (for embeddings).
        Optional: architectures that cannot embed raise :class:`NotImplementedError`."""
        raise NotImplementedError(f"{type(self).__name__} does not produce embeddings")


class ModelArchitecture(ABC):
    """Builds a :class:`CausalLM` from a :class:`ModelSource`."""

    name: str

    @abstractmethod
    def build(self, source: ModelSource, backend: Backend) -> CausalLM:
        """Create the model; weights are prepared through ``backend`` (which may keep them
        quantized). Raises :class:`forge_kernel.errors.ModelFormatError` when a tensor is
        missing or has the wrong shape."""
