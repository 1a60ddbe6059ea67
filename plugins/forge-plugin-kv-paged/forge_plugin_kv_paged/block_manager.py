"""Physical block pool: reference counts, the free list, and the prefix cache's evictable set.

A block is in exactly one state:

* **free** — unreferenced, holds nothing worth keeping (``_free``);
* **evictable** — unreferenced but indexed by the prefix cache (reused on a hit, reclaimed LRU);
* **in use** — referenced by ``ref_count[block]`` sequences (> 1 after fork or a prefix hit).
"""

from __future__ import annotations

from collections import deque

from forge_plugin_kv_paged.prefix_cache import PrefixCache


class BlockPool:
    """Hands out block ids; free blocks first, then the least recently used cached block."""

    __slots__ = ("num_blocks", "ref_count", "_free", "prefix")

    def __init__(self, num_blocks: int, prefix: PrefixCache | None) -> None:
        self.num_blocks = num_blocks
        self.ref_count = [0] * num_blocks
        self._free: deque[int] = deque(range(num_blocks))
        self.prefix = prefix

    def num_available(self) -> int:
        """Blocks that :meth:`take` can return (free plus evictable)."""
        evictable = self.prefix.num_evictable() if self.prefix is not None else 0
        return len(self._free) + evictable

    def num_in_use(self) -> int:
        return self.num_blocks - self.num_available()

    def take(self) -> int:
        """A block with reference count 1. The caller checked :meth:`num_available`."""
        if self._free:
            block = self._free.popleft()
        elif self.prefix is not None and self.prefix.num_evictable():
            block = self.prefix.evict_lru()
        else:  # pragma: no cover - callers check first
            raise RuntimeError("paged KV cache: no block available")
        self.ref_count[block] = 1
        return block

    def incref(self, block: int) -> None:
        """Share ``block`` (fork or prefix hit); revives an evictable cached block."""
        if self.ref_count[block] == 0 and self.prefix is not None:
            self.prefix.unpark(block)
        self.ref_count[block] += 1

    def release(self, block: int) -> None:
        """Drop one reference; an unreferenced block becomes evictable when cached, else free."""
        self.ref_count[block] -= 1
        if self.ref_count[block] == 0:
            if self.prefix is not None and self.prefix.is_cached(block):
                self.prefix.park(block)
            else:
                self._free.append(block)
