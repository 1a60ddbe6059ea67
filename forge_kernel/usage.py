"""Per-request token accounting shared by endpoints and middlewares.

An endpoint calls :func:`report_usage` once a generation finishes. A middleware that meters
tokens (rate limits, metrics) wraps the request in :func:`usage_listener` to receive those
reports. Context variables carry the listener from the middleware down to the endpoint code in
the same request task, so neither needs to know the other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

UsageCallback = Callable[[int, int], None]
"""``callback(prompt_tokens, completion_tokens)``."""

_listeners: ContextVar[tuple[UsageCallback, ...]] = ContextVar("forge_usage_listeners", default=())


@contextlib.contextmanager
def usage_listener(callback: UsageCallback) -> Iterator[None]:
    """Receive every :func:`report_usage` made inside this context (nesting adds listeners)."""
    token = _listeners.set((*_listeners.get(), callback))
    try:
        yield
    finally:
        _listeners.reset(token)


def report_usage(prompt_tokens: int, completion_tokens: int) -> None:
    """Tell the current request's listeners how many tokens a finished generation used."""
    for callback in _listeners.get():
        callback(prompt_tokens, completion_tokens)
