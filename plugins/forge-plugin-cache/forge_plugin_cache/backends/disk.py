"""Disk tier: one file per entry under a directory (default ``FORGE_HOME/cache/responses``).

Writes are atomic (a temporary file in the same directory, flushed, then ``os.replace``), so a
crash or a concurrent reader never sees half an entry. The directory's total size is bounded:
the least recently used files (by modification time, refreshed on every hit) are deleted
first. The size index is built by one scan at start-up and kept in memory, so it assumes one
server per directory (another process's files are found at the next start). File I/O runs in
worker threads, off the event loop.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from forge_plugin_cache.backends import Backend

_SUFFIX = ".entry"
_KEY = re.compile(r"^[0-9a-f]{16,128}$")


class DiskBackend(Backend):
    """``DiskBackend(root, max_bytes)``; keys must be lowercase hex (they are SHA-256s)."""

    name = "disk"

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._index: OrderedDict[str, int] = OrderedDict()  # key -> size, oldest first
        self._bytes = 0
        self.root.mkdir(parents=True, exist_ok=True)
        self._scan()

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"disk cache keys are hex digests, got {key!r}")
        return self.root / key[:2] / (key + _SUFFIX)

    def _scan(self) -> None:
        found = []
        for path in self.root.glob("*/*"):
            if path.name.endswith(".tmp"):  # a write interrupted by a crash
                path.unlink(missing_ok=True)
            elif path.name.endswith(_SUFFIX) and _KEY.match(path.name[:-len(_SUFFIX)]):
                stat = path.stat()
                found.append((stat.st_mtime_ns, path.name[:-len(_SUFFIX)], stat.st_size))
        for _, key, size in sorted(found):
            self._index[key] = size
            self._bytes += size
        self._evict()

    def _evict(self) -> None:
        while self._bytes > self.max_bytes and self._index:
            key, size = self._index.popitem(last=False)
            self._bytes -= size
            self._path(key).unlink(missing_ok=True)

    def _get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
            os.utime(path)  # recency for eviction after a restart
        except FileNotFoundError:
            with self._lock:
                self._bytes -= self._index.pop(key, 0)
            return None
        with self._lock:
            if key in self._index:
                self._index.move_to_end(key)
        return data

    def _put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        path = self._path(key)
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=key[:8], suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        with self._lock:
            self._bytes -= self._index.pop(key, 0)
            self._index[key] = len(data)
            self._bytes += len(data)
            self._evict()

    def _delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
        with self._lock:
            self._bytes -= self._index.pop(key, 0)

    async def get(self, key: str) -> bytes | None:
        return await asyncio.to_thread(self._get, key)

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, key, data)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, key)

    def usage(self) -> tuple[int, int]:
        with self._lock:
            return len(self._index), self._bytes
