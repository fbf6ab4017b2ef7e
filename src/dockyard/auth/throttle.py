"""Brute-force protection: too many failed logins from one client get 429 with Retry-After.

Kept in memory per process (a restart forgives), keyed by client address. A window of
``WINDOW`` seconds allows ``LIMIT`` failures; past that the client is locked out until the
oldest failure leaves the window. Successful logins do not reset the count, so an attacker
holding one valid account cannot use it to keep guessing another.
"""

from __future__ import annotations

import math
import time
from collections import deque

LIMIT = 10
WINDOW = 60.0
MAX_CLIENTS = 100_000


class LoginThrottle:
    def __init__(self, limit: int = LIMIT, window: float = WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures

    def retry_after(self, client: str) -> int | None:
        """Seconds the client must wait before trying again, or None when it may try now."""
        now = time.monotonic()
        failures = self._recent(client, now)
        if failures is None or len(failures) < self.limit:
            return None
        return max(1, math.ceil(failures[0] + self.window - now))

    def failed(self, client: str) -> None:
        now = time.monotonic()
        if len(self._failures) >= MAX_CLIENTS:  # bound memory under a spray from many addresses
            for key in [k for k in self._failures if self._recent(k, now) is None]:
                self._failures.pop(key, None)
            if len(self._failures) >= MAX_CLIENTS:
                self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(client, deque()).append(now)
