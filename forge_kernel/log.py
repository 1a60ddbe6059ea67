"""Structured logging (structlog) to stderr: readable on a terminal, JSON lines otherwise; request
ids are bound through context variables (:func:`bind_request_id`)."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

_SECRET_KEY = re.compile(
    r"api_?key|authorization|password|passwd|secret|cookie|credential"
    r"|(^|_)(access_|auth_|refresh_|bearer_|id_)?token$")
"""Secret keys (``api_key``, ``Authorization``, ``hf_token``), not ``max_tokens``/``token_ids``."""
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    """Whether a value stored under ``key`` (a log field, header or config key) is a secret."""
    return bool(_SECRET_KEY.search(str(key).lower().replace("-", "_")))


def _scrub(value: Any) -> Any:
    """``value`` with secrets masked, looking inside mappings, sequences and strings."""
    if isinstance(value, dict):
        return {k: "***" if is_secret_key(k) else _scrub(v) for k, v in value.items()}
    if type(value) in (list, tuple):  # not named tuples: their constructor differs
        if len(value) == 2 and isinstance(value[0], str | bytes) and is_secret_key(
                value[0].decode("latin-1") if isinstance(value[0], bytes) else value[0]):
            return type(value)((value[0], "***"))  # a (header, value) pair
        return type(value)(_scrub(v) for v in value)
    if isinstance(value, str):
        return _BEARER.sub(lambda m: f"{m.group(1)} ***", value)
    return value


def _redact(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Mask secret-named fields (also in nested headers) and ``Bearer`` tokens in any text."""
    for key, value in event.items():
        event[key] = "***" if is_secret_key(key) else _scrub(value)
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
