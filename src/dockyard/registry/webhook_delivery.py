"""Sending webhook deliveries: claim the due rows of the queue, POST them signed, record the outcome.

The queue is the ``webhook_deliveries`` table itself, so it survives restarts and is shared by
every registry process on the database. A dispatcher *claims* a due delivery by setting its
``lease_until`` in an UPDATE guarded by the values it read (still pending, same attempt count, same
lease): of several processes racing for one row exactly one update matches, and only that process
sends it. The lease outlasts one attempt (the HTTP timeout plus a margin) and is cleared when the
outcome is recorded; if the process dies in between, the lease runs out and another process, or
this one restarted, sends the delivery again. Delivery is therefore *at least once*: a crash after
the receiver got a request but before its answer was recorded repeats it, with the same delivery
id and byte-identical body, which is what receivers deduplicate on.

Signing follows Stripe's scheme: ``X-Dockyard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>" keyed with the webhook's secret>``. The receiver recomputes it over the raw body,
compares in constant time, and refuses a timestamp more than a few minutes old, so a captured
request cannot be replayed later. The timestamp is that of the attempt, so retries are signed anew.

A 2xx answer is success; anything else (another status, a refused connection, a timeout) is a
failed attempt, retried after 2, 4, 8, ... seconds (capped at ten minutes, with jitter) until
``max_attempts`` have failed; the delivery is then ``failed`` and waits for a redelivery. Redirects
are not followed: a webhook posts to the URL it was given and nowhere else. Deliveries are sent
concurrently (a few at a time), so a receiver must not rely on their order: ``occurred_at`` says it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import sqlalchemy as sa

from dockyard import __version__
from dockyard.meta.db import Database
from dockyard.meta.tables import webhook_deliveries, webhooks

log = logging.getLogger("dockyard.webhooks")
BACKOFF_BASE, BACKOFF_CAP = 2.0, 600.0
LEASE_MARGIN = 5.0  # a lease outlasts the HTTP timeout by this much: recording the outcome takes a moment
POLL_EVERY = 1.0  # for deliveries queued by other processes or falling due; this process's own wake it at once
CONCURRENCY = 8
MAX_ERROR = 300  # characters of an error (with the start of a receiver's error body) kept in the log


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Dockyard-Signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def backoff(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failure: 2, 4, 8, ... up to ten minutes, with 10 %
    jitter so that deliveries that failed together (a receiver down) do not retry in lockstep."""
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(max(attempts, 1) - 1, 20) * random.uniform(0.9, 1.1))


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this process holds the lease of, with what it takes to send it."""

    id: int
    delivery_id: str
    event: str
    payload: str
    attempts: int  # before this one
    url: str
    secret: str
    lease: float


# -- the queue -------------------------------------------------------------------------------------


def due(conn: sa.Connection, now: float, limit: int) -> Sequence[sa.Row]:
    """Pending deliveries whose time has come, nobody holds and whose webhook is enabled."""
    d, w = webhook_deliveries.c, webhooks.c
    q = (
        sa.select(d.id, d.delivery_id, d.event, d.payload, d.attempts, d.lease_until, w.url, w.secret)
        .select_from(webhook_deliveries.join(webhooks, w.id == d.webhook_id))
        .where(
            d.status == "pending",
            d.next_attempt_at <= now,
            sa.or_(d.lease_until.is_(None), d.lease_until < now),
            w.enabled.is_(True),
        )
        .order_by(d.next_attempt_at, d.id)
        .limit(limit)
    )
    return conn.execute(q).all()


def claim(conn: sa.Connection, candidates: Sequence[Any], now: float, lease_seconds: float) -> list[Claimed]:
    """Lease the ``candidates`` read by ``due``; those another process claimed (or that changed)
    since are skipped. The random fraction makes each lease value this claim's own, so that
    recording an outcome can check it still holds the lease."""
    d = webhook_deliveries.c
    claimed = []
    for row in candidates:
        lease = now + lease_seconds + random.random() / 1000
        held = d.lease_until.is_(None) if row.lease_until is None else d.lease_until == row.lease_until
        q = (
            sa.update(webhook_deliveries)
            .where(d.id == row.id, d.status == "pending", d.attempts == row.attempts, held)
            .values(lease_until=lease)
        )
        if conn.execute(q).rowcount == 1:
            claimed.append(
                Claimed(row.id, row.delivery_id, row.event, row.payload, row.attempts, row.url, row.secret, lease)
            )
    return claimed


def finish(
    conn: sa.Connection,
    claimed: Claimed,
    now: float,
    status: int | None,
    error: str | None,
    duration_ms: float,
    max_attempts: int,
) -> float | None:
    """Record an attempt (success when ``error`` is None); returns the delay before the retry it
    scheduled, if any. Nothing is written when the lease was lost meanwhile (the row was deleted
    with its webhook, or another process took over after the lease ran out)."""
    d = webhook_deliveries.c
    attempts = claimed.attempts + 1
    values: dict[str, Any] = {
        "attempts": attempts,
        "last_status": status,
        "last_error": error,
        "last_duration_ms": round(duration_ms, 1),
        "lease_until": None,
    }
    delay = None
    if error is None:
        values.update(status="delivered", delivered_at=now)
    elif attempts >= max_attempts:
        values.update(status="failed")
    else:
        delay = backoff(attempts)
        values.update(next_attempt_at=now + delay)
    q = sa.update(webhook_deliveries).where(d.id == claimed.id, d.lease_until == claimed.lease).values(**values)
    return delay if conn.execute(q).rowcount == 1 else None


def release(conn: sa.Connection, held: Sequence[Claimed]) -> None:
    """Give up leases without an outcome (shutting down mid-send): due again at once."""
    d = webhook_deliveries.c
    for c in held:
        conn.execute(
            sa.update(webhook_deliveries).where(d.id == c.id, d.lease_until == c.lease).values(lease_until=None)
        )


# -- the dispatcher --------------------------------------------------------------------------------


class WebhookDispatcher:
    """A background task of the server that sends due deliveries, a few at a time.

    ``active`` says whether any webhook exists at all: without one there is nothing to send, and
    the dispatcher does not even look at the queue.
    """

    def __init__(
        self,
        db: Database,
        *,
        timeout: float,
        max_attempts: int,
        concurrency: int = CONCURRENCY,
        poll_every: float = POLL_EVERY,
        active: Callable[[], bool] = lambda: True,
    ) -> None:
        self.db = db
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.concurrency = max(1, concurrency)
        self.poll_every = poll_every
        self.lease_seconds = timeout + LEASE_MARGIN
        self._active = active
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None
        self._inflight: dict[asyncio.Task, Claimed] = {}
        self._stopping = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"User-Agent": f"dockyard/{__version__}"},
        )
        self._task = self._loop.create_task(self._run())

    def wake(self) -> None:
        """Look at the queue now (new deliveries were committed). Safe from any thread."""
        loop, event = self._loop, self._wake
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    async def stop(self) -> None:
        """Stop claiming; let the sends in flight finish (each is bounded by the timeout), and give
        back the leases of any that do not, so that the next start sends them at once."""
        if self._task is None:
            return
        self._stopping = True
        assert self._wake is not None
        self._wake.set()
        await self._task
        if self._inflight:
            _, pending = await asyncio.wait(list(self._inflight), timeout=self.timeout + 1)
            abandoned = [self._inflight[t] for t in pending if t in self._inflight]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if abandoned:
                await self.db.run_relaxed(release, abandoned)
        if self._session is not None:
            await self._session.close()
        self._task = None

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            self._wake.clear()
            try:
                await self._fill()
            except Exception:  # the database may be briefly unavailable: try again at the next poll
                log.exception("webhook dispatch failed")
            if self._stopping:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_every)
            except TimeoutError:
                pass

    async def _fill(self) -> None:
        free = self.concurrency - len(self._inflight)
        if free <= 0 or not self._active():
            return
        now = time.time()
        candidates = await self.db.read(due, now, free)
        if not candidates:
            return
        for c in await self.db.run_relaxed(claim, candidates, now, self.lease_seconds):
            task = asyncio.get_running_loop().create_task(self._send(c))
            self._inflight[task] = c
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task) -> None:
        self._inflight.pop(task, None)
        if self._wake is not None:
            self._wake.set()  # a slot is free

    async def _send(self, c: Claimed) -> None:
        assert self._session is not None
        body = c.payload.encode()
        headers = {
            "Content-Type": "application/json",
            "X-Dockyard-Event": c.event,
            "X-Dockyard-Delivery": c.delivery_id,
            "X-Dockyard-Attempt": str(c.attempts + 1),
            "X-Dockyard-Signature": signature(c.secret, int(time.time()), body),
        }
        status, error = None, None
        started = time.monotonic()
        try:
            async with self._session.post(c.url, data=body, headers=headers, allow_redirects=False) as response:
                status = response.status
                if not 200 <= status < 300:
                    start = (await response.content.read(MAX_ERROR)).decode("utf-8", "replace").strip()
                    error = f"HTTP {status}" + (f": {start}" if start else "")
        except TimeoutError:
            error = f"no answer within {self.timeout:g} s"
        except Exception as exc:  # refused, reset, DNS, TLS, a URL aiohttp will not send to: all a failed attempt
            error = f"{type(exc).__name__}: {exc}"
        duration_ms = (time.monotonic() - started) * 1000
        try:
            delay = await self.db.run_relaxed(
                finish, c, time.time(), status, error[:MAX_ERROR] if error else None, duration_ms, self.max_attempts
            )
        except Exception:  # the lease runs out and the delivery is sent again: at least once
            log.exception("could not record webhook delivery %s", c.delivery_id)
            return
        if error is not None:
            # The host only: a URL may carry credentials or a secret path.
            host = urlsplit(c.url).hostname
            log.info("webhook delivery %s to %s failed (attempt %d): %s", c.delivery_id, host, c.attempts + 1, error)
        if delay is not None and self._loop is not None and self._wake is not None:
            self._loop.call_later(delay, self._wake.set)
