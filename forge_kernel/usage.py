"""Per-request token accounting: endpoints :func:`report_usage`, metering middlewares listen with
:func:`usage_listener` (docs/architecture.md)."""

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
