"""Counters of the WebSocket endpoint, served at ``GET {path}/stats`` (a debug view: tests read
it to check that a slow reader's send queue stays bounded)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True, eq=False)
class ConnectionStats:
    """One connection's send side. ``queued_messages`` counts messages ready to send (control
    messages plus one per choice with unsent text, plus each unsent final message);
    ``control_bytes`` the size of queued control messages, ``pending_chars`` the unsent
    generated text. Both are bounded: see ``docs/websocket.md``."""

    client: str = ""
    generations: int = 0
    queued_messages: int = 0
    peak_queued_messages: int = 0
    control_bytes: int = 0
    peak_control_bytes: int = 0
    pending_chars: int = 0
    peak_pending_chars: int = 0
    coalesced_deltas: int = 0
    """Engine deltas merged into an unsent delta because the client was not reading."""
    messages_sent: int = 0

    def queued(self, count: int) -> None:
        self.queued_messages += count
        self.peak_queued_messages = max(self.peak_queued_messages, self.queued_messages)

    def control(self, size: int) -> None:
        self.control_bytes += size
        self.peak_control_bytes = max(self.peak_control_bytes, self.control_bytes)

    def pending(self, chars: int) -> None:
        self.pending_chars += chars
        self.peak_pending_chars = max(self.peak_pending_chars, self.pending_chars)


class EndpointStats:
    """Every open connection's :class:`ConnectionStats`, plus totals."""

    def __init__(self) -> None:
        self.connections: set[ConnectionStats] = set()
        self.connections_total = 0

    def open(self, client: str) -> ConnectionStats:
        stats = ConnectionStats(client=client)
        self.connections.add(stats)
        self.connections_total += 1
        return stats

    def close(self, stats: ConnectionStats) -> None:
        self.connections.discard(stats)

    def snapshot(self) -> dict[str, Any]:
        rows = [dataclasses.asdict(c) for c in self.connections]
        return {"connections": len(rows), "connections_total": self.connections_total,
                "generations": sum(r["generations"] for r in rows),
                "queued_messages": sum(r["queued_messages"] for r in rows),
                "pending_chars": sum(r["pending_chars"] for r in rows),
                "per_connection": rows}
