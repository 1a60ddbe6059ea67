"""Per-key sliding-window limits on requests and tokens per minute (in memory, per server)."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

WINDOW_SECONDS = 60.0


@dataclass(slots=True)
class _Window:
    requests: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_sum: int = 0

    def expire(self, now: float) -> None:
        horizon = now - WINDOW_SECONDS
        while self.requests and self.requests[0] <= horizon:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= horizon:
            self.token_sum -= self.tokens.popleft()[1]


@dataclass(slots=True, frozen=True)
class LimitDecision:
    allowed: bool
    retry_after: float = 0.0
    """Seconds until the request would be allowed (0 when allowed)."""
    reason: str = ""


class RateLimiter:
    """Counts requests when admitted and tokens when reported, per key id."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def admit(self, key_id: str, rpm: int | None, tpm: int | None) -> LimitDecision:
        """Admit one request (recording it) unless the key is over a limit."""
        now = self._clock()
        with self._lock:
            window = self._windows.setdefault(key_id, _Window())
            window.expire(now)
            if rpm is not None and len(window.requests) >= rpm:
                wait = window.requests[len(window.requests) - rpm] + WINDOW_SECONDS - now
                return LimitDecision(False, max(wait, 0.0),
                                     f"{rpm} requests per minute")
            if tpm is not None and window.token_sum >= tpm:
                return LimitDecision(False, self._token_wait(window, tpm, now),
                                     f"{tpm} tokens per minute")
            window.requests.append(now)
            return LimitDecision(True)

    def add_tokens(self, key_id: str, tokens: int) -> None:
        now = self._clock()
        with self._lock:
            window = self._windows.setdefault(key_id, _Window())
            window.tokens.append((now, tokens))
            window.token_sum += tokens

    @staticmethod
    def _token_wait(window: _Window, tpm: int, now: float) -> float:
        """Time until enough recorded tokens leave the window to go under ``tpm``."""
        remaining = window.token_sum
        for stamp, tokens in window.tokens:
            remaining -= tokens
            if remaining < tpm:
                return max(stamp + WINDOW_SECONDS - now, 0.0)
        return WINDOW_SECONDS
