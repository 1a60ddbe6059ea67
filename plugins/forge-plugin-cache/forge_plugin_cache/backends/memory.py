"""In-process LRU tier bounded by the bytes it holds."""

from __future__ import annotations

from collections import OrderedDict

from forge_plugin_cache.backends import Backend


class MemoryBackend(Backend):
    """Least-recently-used entries are evicted once the stored bytes exceed ``max_bytes``
    (an entry larger than ``max_bytes`` is not stored at all)."""

    name = "memory"

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0

    async def get(self, key: str) -> bytes | None:
        data = self._entries.get(key)
        if data is not None:
            self._entries.move_to_end(key)
        return data

    async def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        await self.delete(key)
        self._entries[key] = data
        self._bytes += len(data)
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted)

    async def delete(self, key: str) -> None:
        data = self._entries.pop(key, None)
        if data is not None:
            self._bytes -= len(data)

    def usage(self) -> tuple[int, int]:
        return len(self._entries), self._bytes

    def __contains__(self, key: str) -> bool:
        return key in self._entries
