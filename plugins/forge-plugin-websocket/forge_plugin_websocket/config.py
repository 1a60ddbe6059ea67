"""The ``[websocket]`` configuration section (file table or ``FORGE_WEBSOCKET_*``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class WebSocketConfig:
    """Settings of the WebSocket endpoint."""

    path: str = "/v1/ws"
    """Where the WebSocket is mounted; ``{path}/stats`` serves its counters over HTTP."""
    max_generations: int = 64
    """Generations one connection may run at once; more is answered ``too_many_generations``."""
    send_queue_size: int = 64
    """Bound of the per-connection queue of control messages (pong, errors). When it is full
    the server stops reading that connection until the client reads again."""
    send_queue_bytes: int = 1 << 20
    """Byte bound of the same queue (a ``pong`` echoes the ping's ``data``)."""
    max_id_length: int = 128
    """Longest client-chosen generation id."""

    @classmethod
    def from_section(cls, section: Any) -> WebSocketConfig:
        """From ``config.section("websocket")`` (an instance, a dict, or nothing)."""
        if isinstance(section, cls):
            return section
        return cls(**dict(section or {}))
