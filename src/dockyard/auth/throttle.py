"""Brute-force protection: too many failed logins from one client get 429 with Retry-After.

Keyed by client address: a window of ``WINDOW`` seconds allows ``LIMIT`` failures; past that the
client is locked out until the oldest failure leaves the window. Successful logins do not reset
the count, so an attacker holding one valid account cannot use it to keep guessing another.

The failures are rows in the database (``login_failures``), not a process's memory: behind a load
balancer every replica or worker would otherwise allow its own ``LIMIT``, multiplying the guesses
by the number of processes, and a restart would forgive. The check is one indexed read per
password login; a failure is one insert (with every expired row deleted in the same
transaction). Times are wall-clock, as replicas on several machines share no monotonic clock.
"""

from __future__ import annotations

import math
import time

import sqlalchemy as sa

from dockyard.meta.db import Database
from dockyard.meta.tables import login_failures

LIMIT = 10
WINDOW = 60.0
CLIENT_WIDTH = 64  # the column's width; an IPv6 address with a zone fits


class LoginThrottle:
    def __init__(self, db: Database, limit: int = LIMIT, window: float = WINDOW) -> None:
        self.db = db
        self.limit = limit
        self.window = window

    def _window(self, conn: sa.Connection, client: str, now: float) -> tuple[int, float | None]:
        """(failures within the window, the oldest of them)."""
        count, oldest = conn.execute(
            sa.select(sa.func.count(), sa.func.min(login_failures.c.at)).where(
                login_failures.c.client == client[:CLIENT_WIDTH], login_failures.c.at > now - self.window
            )
        ).one()
        return int(count), oldest

    async def retry_after(self, client: str) -> int | None:
        """Seconds the client must wait before trying again, or None when it may try now."""
        now = time.time()
        count, oldest = await self.db.read(self._window, client, now)
        if count < self.limit or oldest is None:
            return None
        return max(1, math.ceil(oldest + self.window - now))

    async def failed(self, client: str) -> None:
        await self.db.run_relaxed(self._record, client[:CLIENT_WIDTH], time.time())

    def _record(self, conn: sa.Connection, client: str, now: float) -> None:
        # Everyone's expired rows go (by the index on ``at``), so a spray from many addresses
        # leaves at most one window of rows behind.
        conn.execute(sa.delete(login_failures).where(login_failures.c.at <= now - self.window))
        conn.execute(sa.insert(login_failures).values(client=client, at=now))
