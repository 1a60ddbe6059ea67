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
    """Whether :meth:`match_prefix` can return cached tokens (and :meth:`commit` publishes
    them). The engine then holds back choices 1..n-1 of a request until choice 0's prompt is
    cached, so the prompt is computed once."""
    supports_fork: bool = False
    """Whether :meth:`fork` works; when it does (and the scheduler accepts forked sequences)
    the engine forks choices 1..n-1 from choice 0 instead of recomputing the prompt."""
    supports_truncate: bool = False
    """Whether :meth:`truncate` works (speculative decoding needs it to drop the KV of
    rejected draft tokens)."""

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
        """Grow ``seq_id`` to hold ``total_tokens``.

        Raises :class:`forge_kernel.errors.KVCacheFull` when it cannot."""

    @abstractmethod
    def free(self, seq_id: int) -> None:
        """Release everything ``seq_id`` holds. Idempotent; unknown ids are ignored."""

    def fork(self, parent_seq_id: int, child_seq_id: int) -> None:
        """Make ``child`` share ``parent``'s cached tokens (copy-on-write where supported).
        Raises :class:`~forge_kernel.errors.KVCacheFull` when there is no room; only called
        when :attr:`supports_fork` is true."""
        raise NotImplementedError(f"{type(self).__name__} cannot fork sequences")

    def truncate(self, seq_id: int, num_tokens: int) -> None:
        """Shrink ``seq_id`` to its first ``num_tokens`` tokens: later positions' KV is dropped
        and their space freed, and the next write at ``num_tokens`` must not change what other
        sequences or the prefix cache see. No-op when it holds no more; only called when
        :attr:`supports_truncate` is true."""
        raise NotImplementedError(f"{type(self).__name__} cannot truncate sequences")

    def match_prefix(self, seq_id: int, token_ids: Sequence[int]) -> int:
        """Attach cached blocks matching a prefix of ``token_ids`` to a new ``seq_id``; return
        how many tokens need no recomputation (0 when prefix caching is off or nothing matches).
        ``token_ids`` are the sequence's ``Sequence.prefix_keys`` (they carry its LoRA
        adapter): hash and compare them as given."""
        return 0

    def commit(self, seq_id: int, token_ids: Sequence[int], num_computed: int) -> None:
        """Tell the cache the first ``num_computed`` of ``token_ids`` (the prefix keys, as in
        :meth:`match_prefix`) now have KV stored, so full blocks can be published for prefix
        caching. Caches without prefix caching ignore it."""
        return None

    @abstractmethod
    def usage(self) -> float:
        """Fraction of capacity in use by running sequences, 0.0-1.0."""

    # -- data path --------------------------------------------------------------------------
    def begin_step(self, batch: ForwardBatch) -> None:
        """Called by the engine once per step, before the model's forward pass; every
        :meth:`attend` until the next call belongs to ``batch``. A cache prepares per-step work
        shared by all layers here (write slots, block tables, copy-on-write of shared blocks);
        raises :class:`~forge_kernel.errors.KVCacheFull` when a chunk writes past its
        allocation. Default: nothing to prepare."""
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
        """Store this step's ``k``/``v`` for every chunk of ``batch`` at its positions, then
        return causal attention of ``q`` over each sequence's cached plus new keys.
        ``sliding_window`` limits each query to the last ``sliding_window`` positions
        (inclusive of itself)."""
