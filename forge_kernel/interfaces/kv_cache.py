"""KV-cache managers: allocation (called by the scheduler) and the data path (``begin_step``,
``attend`` per layer, ``commit``); docs/plugins/interfaces.md."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from forge_kernel.interfaces.batch import ForwardBatch


@dataclass(slots=True, frozen=True)
class KVCacheSpec:
    """What the model needs stored per token (from :meth:`CausalLM.kv_cache_spec`)."""

    num_layers: int
    num_kv_heads: int
    head_dim: int
    dtype: torch.dtype
    device: str = "cpu"
    max_model_len: int = 8192

    @property
    def bytes_per_token(self) -> int:
        """Bytes of K and V for one token across all layers."""
        import torch

        itemsize = torch.empty((), dtype=self.dtype).element_size()
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * itemsize


@dataclass(slots=True)
class KVCacheConfig:
    """User-facing cache settings (``--block-size``, ``--num-blocks``, memory budget)."""

    block_size: int = 16
    num_blocks: int | None = None
    """Total blocks; ``None`` sizes the cache from ``memory_budget_bytes``."""
    memory_budget_bytes: int = 512 * 1024 * 1024
    enable_prefix_caching: bool = True


class KVCache(ABC):
    """Key/value storage for every running sequence. Factory: ``factory(spec, config)``."""

    name: str
    supports_prefix_caching: bool = False
    """Whether :meth:`match_prefix` can return cached tokens (:meth:`commit` publishes them)."""
    supports_fork: bool = False
    """Whether :meth:`fork` works (the engine then forks choices 1..n-1 from choice 0)."""
    supports_truncate: bool = False
    """Whether :meth:`truncate` works (speculative decoding needs it)."""

    # -- allocation -------------------------------------------------------------------------
    @abstractmethod
    def capacity_tokens(self) -> int:
        """Total tokens the cache can hold."""

    @abstractmethod
    def free_tokens(self) -> int:
        """Tokens that can still be allocated (counting evictable prefix-cache blocks)."""

    @abstractmethod
    def can_allocate(self, seq_id: int, total_tokens: int) -> bool:
        """Whether ``seq_id`` can grow to hold ``total_tokens`` tokens."""

    @abstractmethod
    def allocate(self, seq_id: int, total_tokens: int) -> None:
        """Grow ``seq_id`` to hold ``total_tokens``; :class:`~forge_kernel.errors.KVCacheFull`
        when it cannot."""

    @abstractmethod
    def free(self, seq_id: int) -> None:
        """Release everything ``seq_id`` holds. Idempotent; unknown ids are ignored."""

    def fork(self, parent_seq_id: int, child_seq_id: int) -> None:
        """Make ``child`` share ``parent``'s cached tokens; ``KVCacheFull`` when out of room."""
        raise NotImplementedError(f"{type(self).__name__} cannot fork sequences")

    def truncate(self, seq_id: int, num_tokens: int) -> None:
        """Keep ``seq_id``'s first ``num_tokens`` tokens and free the rest (isolation rules:
        docs/plugins/interfaces.md)."""
        raise NotImplementedError(f"{type(self).__name__} cannot truncate sequences")

    def match_prefix(self, seq_id: int, token_ids: Sequence[int]) -> int:
        """Attach cached blocks matching a prefix of ``token_ids`` (``Sequence.prefix_keys``)
        to a new ``seq_id``; return how many tokens need no recomputation."""
        return 0

    def commit(self, seq_id: int, token_ids: Sequence[int], num_computed: int) -> None:
        """The first ``num_computed`` of ``token_ids`` (prefix keys) now have KV stored."""
        return None

    @abstractmethod
    def usage(self) -> float:
        """Fraction of capacity in use by running sequences, 0.0-1.0."""

    # -- data path --------------------------------------------------------------------------
    def begin_step(self, batch: ForwardBatch) -> None:
        """Once per step before the forward pass: prepare work shared by all layers for the
        :meth:`attend` calls on ``batch`` (write slots, block tables, copy-on-write)."""
        return None

    @abstractmethod
    def attend(
        self,
        layer: int,
        q: torch.Tensor,  # [T, num_heads, head_dim]
        k: torch.Tensor,  # [T, num_kv_heads, head_dim]
        v: torch.Tensor,  # [T, num_kv_heads, head_dim]
        batch: ForwardBatch,
        *,
        scale: float,
        sliding_window: int | None = None,
        logit_softcap: float | None = None,
    ) -> torch.Tensor:  # [T, num_heads, head_dim]
        """Store ``k``/``v`` at each chunk's positions, then return causal attention of ``q``
        over each sequence's cached plus new keys (semantics: engine/attention.py)."""
