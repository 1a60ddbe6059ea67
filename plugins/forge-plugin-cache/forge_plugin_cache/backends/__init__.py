"""Storage tiers of the response cache. Each maps a hex key to the bytes of one entry."""

from __future__ import annotations

from abc import ABC, abstractmethod


class Backend(ABC):
    """One tier. Failures of a remote tier are handled inside it (it answers ``None`` and
    stores nothing while down), so a broken tier never fails a request."""

    name: str

    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The stored bytes, or ``None``."""

    @abstractmethod
    async def put(self, key: str, data: bytes) -> None:
        """Store (replacing), evicting older entries to stay within the tier's bound."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Forget ``key`` (absent is fine)."""

    def usage(self) -> tuple[int, int] | None:
        """``(entries, bytes)`` held, when the tier knows them cheaply."""
        return None

    def up(self) -> bool:
        """Whether the tier is currently in use (a remote one may be bypassed while down)."""
        return True

    async def close(self) -> None:  # noqa: B027 - optional: local tiers hold nothing
        """Release connections."""
