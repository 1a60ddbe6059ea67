"""Prefix caching: full blocks indexed by a hash chain of their contents.

A full block's key is ``(parent_hash, token_ids_of_the_block)``; its hash is ``hash(key)``, so a
block's hash commits to every token before it (the chain). Lookups compare the stored key too,
so a 64-bit hash collision can never hand a sequence the wrong keys/values. The token ids are
the sequence's prefix keys (``Sequence.prefix_keys``): ids offset by the LoRA adapter's
namespace, so KV computed under one adapter is never found for another (or the base model).

Cached blocks whose reference count drops to zero stay indexed but *evictable*, in LRU order:
a repeated system prompt finds them again; the pool reclaims the least recently freed first.
"""

from __future__ import annotations

from collections import OrderedDict

ROOT_HASH = 0x5EED_F0E6E
"""Parent hash of a sequence's first block."""

BlockKey = tuple[int, tuple[int, ...]]


def block_hash(parent_hash: int, tokens: tuple[int, ...]) -> int:
    """Chain hash of a full block holding ``tokens`` after a prefix hashing to ``parent_hash``."""
    return hash((parent_hash, tokens))


class PrefixCache:
    """Index of published full blocks plus the LRU list of evictable (unreferenced) ones."""

    __slots__ = ("_by_hash", "_keys", "_evictable")

    def __init__(self) -> None:
        self._by_hash: dict[int, int] = {}  # chain hash -> block id
        self._keys: dict[int, tuple[int, BlockKey]] = {}  # block id -> (hash, key)
        self._evictable: OrderedDict[int, None] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._keys)

    def lookup(self, parent_hash: int, tokens: tuple[int, ...]) -> tuple[int, int | None]:
        """Return ``(hash, block)`` for this block's contents; ``block`` is ``None`` on a miss."""
        h = block_hash(parent_hash, tokens)
        block = self._by_hash.get(h)
        if block is not None and self._keys[block][1] != (parent_hash, tokens):
            block = None  # hash collision: treat as a miss
        return h, block

    def publish(self, block: int, parent_hash: int, tokens: tuple[int, ...]) -> int:
        """Index ``block`` (now full and immutable); returns its chain hash. When the same
        contents are already indexed under another block, that one stays canonical."""
        h = block_hash(parent_hash, tokens)
        if h not in self._by_hash and block not in self._keys:
            self._by_hash[h] = block
            self._keys[block] = (h, (parent_hash, tokens))
        return h

    def is_cached(self, block: int) -> bool:
        return block in self._keys

    # -- evictable list (blocks with reference count 0) ---------------------------------------
    def num_evictable(self) -> int:
        return len(self._evictable)

    def park(self, block: int) -> None:
        """``block`` lost its last reference: keep its contents, evictable (most recent last)."""
        self._evictable[block] = None

    def unpark(self, block: int) -> None:
        """``block`` is referenced again (a prefix hit): no longer evictable."""
        self._evictable.pop(block, None)

    def evict_lru(self) -> int:
        """Forget the least recently freed cached block and return it for reuse."""
        block, _ = self._evictable.popitem(last=False)
        h, _ = self._keys.pop(block)
        del self._by_hash[h]
        return block

    def clear(self) -> list[int]:
        """Forget every evictable block (e.g. when prefix caching is reset); returns them."""
        freed = []
        while self._evictable:
            freed.append(self.evict_lru())
        return freed
