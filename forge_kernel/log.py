"""Structured logging (structlog) to stderr: readable on a terminal, JSON lines otherwise.

Request ids are bound through context variables (:func:`bind_request_id`), so every log line
emitted while serving a request carries it without being passed around.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_SECRET_KEYS = ("api_key", "authorization", "token", "password", "secret")


def _redact(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Never let a secret reach a log line, whoever passed it."""
    for key in list(event):
        if any(s in key.lower() for s in _SECRET_KEYS):
            event[key] = "***"
    return event


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    """``fmt``: ``console``, ``json`` or ``auto`` (console on a TTY, JSON otherwise)."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer = (structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()) if fmt == "console"
                else structlog.processors.JSONRenderer())
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            numeric if isinstance(numeric, int) else logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "forge") -> Any:
    return structlog.get_logger(name)


def bind_request_id(request_id: str) -> None:
    """Attach ``request_id`` to every log line of the current request's context."""
    structlog.contextvars.bind_contextvars(request_id=request_id)


def clear_request_context() -> None:
    structlog.contextvars.clear_contextvars()
