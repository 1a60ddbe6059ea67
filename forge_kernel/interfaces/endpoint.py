"""HTTP/WebSocket endpoints and the middlewares that wrap them all."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI


class Endpoint(ABC):
    """Adds routes to the server's FastAPI application."""

    name: str

    @abstractmethod
    def mount(self, app: FastAPI, server: Any) -> None:
        """Add routes. ``server`` is the :class:`forge_kernel.server.ServerContext` (engine,
        model name, config)."""


class Middleware(ABC):
    """Wraps the whole ASGI application (HTTP and WebSocket), so it covers every endpoint,
    including ones other plugins add. Lower ``order`` wraps outermost (runs first)."""

    name: str
    order: int = 100

    @abstractmethod
    def wrap(self, app: Any, server: Any) -> Any:
        """Return an ASGI application that handles requests and delegates to ``app``."""
