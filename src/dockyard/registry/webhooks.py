"""Webhooks: repository changes told to the outside world, as signed JSON POSTs.

``webhook_store`` holds the model (webhooks, the delivery log, payloads), ``webhook_delivery``
the sending; this module connects them to the registry:

- Push and delete events are queued *in the transaction that makes the change* (``changed`` is a
  registry hook): one ``webhook_deliveries`` row per matching webhook, committed with the tag or
  manifest change or not at all. A crash or restart never loses one; the dispatcher is woken once
  the transaction commits.
- Pulls happen on the hot path, outside any transaction, and may be thousands a second: they are
  queued in memory and written in batches every ``FLUSH_EVERY`` second and at shutdown. A hard kill
  (SIGKILL, power loss) can therefore lose up to about a second of *pull* events, never a push or
  a delete.
- The list of webhooks is cached in memory and read again every ``REFRESH`` seconds, so that a
  push in a registry without webhooks costs a clock read. A webhook added or removed through this
  process's API counts at once (``reload``); one changed by the CLI, another process, within
  ``REFRESH`` seconds. A push still checks, in its transaction, that the webhooks it queues for
  exist and are enabled, so a stale cache can delay a new webhook but never fail a push.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from dockyard.config import Settings
from dockyard.meta.db import Database
from dockyard.meta.tables import webhook_deliveries, webhooks
from dockyard.registry import webhook_store as store
from dockyard.registry.hooks import Change, NoHooks
from dockyard.registry.service import Registry
from dockyard.registry.webhook_delivery import WebhookDispatcher

log = logging.getLogger("dockyard.webhooks")
REFRESH = 2.0
FLUSH_EVERY = 1.0
MAX_QUEUED_PULLS = 100_000  # the database is stuck: keep serving pulls, count the lost events


class _Known:
    """The enabled webhooks as of one read, indexed by target for the per-event look-up."""

    def __init__(self, found: Sequence[store.Webhook]) -> None:
        self.any = bool(found)
        self.events = frozenset(e for w in found for e in w.events)
        self.by_repository: dict[str, list[store.Webhook]] = {}
        self.by_namespace: dict[str, list[store.Webhook]] = {}
        for w in found:
            if w.repository is not None:
                self.by_repository.setdefault(w.repository, []).append(w)
            else:
                self.by_namespace.setdefault(str(w.namespace), []).append(w)

    def matching(self, event: str, repository: str) -> list[store.Webhook]:
        if event not in self.events:
            return []
        candidates = self.by_repository.get(repository, []) + self.by_namespace.get(repository.split("/", 1)[0], [])
        return [w for w in candidates if w.watches(event, repository)]


class WebhookEvents(NoHooks):
    """The registry hook: turns changes and pulls into queued deliveries."""

    def __init__(self, refresh: float = REFRESH) -> None:
        self.refresh = refresh
        self._known = _Known(())
        self._loaded_at = -math.inf
        self._generation = 0
        self._pulls: list[tuple[int, str, Change, float]] = []
        self.dropped_pulls = 0
        # Called once deliveries are committed; the dispatcher's wake. May run on any thread.
        self.on_commit: Callable[[], None] = lambda: None

    # -- the cached list of webhooks ---------------------------------------------------------

    @property
    def any(self) -> bool:
        """Whether any enabled webhook exists (as of the last read)."""
        return self._known.any

    def stale(self) -> bool:
        return time.monotonic() - self._loaded_at > self.refresh

    def invalidate(self) -> None:
        self._generation += 1
        self._loaded_at = -math.inf

    def load(self, conn: sa.Connection) -> None:
        """Read the webhooks again. A read that overlapped an ``invalidate`` is used but not
        trusted: the next event reads again."""
        generation, started = self._generation, time.monotonic()
        self._known = _Known([w for w in store.all_webhooks(conn) if w.enabled])
        if generation == self._generation:
            self._loaded_at = started

    # -- pushes and deletes: in the registry's transaction -----------------------------------

    def changed(self, conn: sa.Connection, change: Change) -> None:
        if change.action not in ("push", "delete"):
            return
        if self.stale():
            self.load(conn)
        targets = self._known.matching(change.action, change.repository)
        if not targets:
            return
        event_id, at = store.new_id(), change.at or time.time()
        rows = _rows(conn, [(w.id, event_id, change, at) for w in targets])
        if rows:
            conn.execute(sa.insert(webhook_deliveries), rows)
            sa.event.listen(conn, "commit", self._committed)

    def _committed(self, conn: sa.Connection) -> None:
        self.on_commit()

    # -- pulls: queued in memory, written in batches ----------------------------------------

    def observed(self, change: Change) -> None:
        if change.action != "pull" or "pull" not in self._known.events:
            return
        targets = self._known.matching("pull", change.repository)
        if not targets:
            return
        if len(self._pulls) >= MAX_QUEUED_PULLS:
            self.dropped_pulls += len(targets)
            return
        event_id, at = store.new_id(), change.at or time.time()
        self._pulls.extend((w.id, event_id, change, at) for w in targets)

    async def flush(self, db: Database) -> None:
        """Write the queued pull events; they are due at once."""
        batch, self._pulls = self._pulls, []
        if not batch:
            return

        def insert(conn: sa.Connection) -> int:
            rows = _rows(conn, batch)
            if rows:
                conn.execute(sa.insert(webhook_deliveries), rows)
            return len(rows)

        if await db.run_relaxed(insert):
            self.on_commit()


def _rows(conn: sa.Connection, events: Sequence[tuple[int, str, Change, float]]) -> list[dict[str, Any]]:
    """Delivery rows for (webhook id, event id, change, time), leaving out webhooks that were
    removed or disabled since the cache was read (a foreign key would otherwise fail the push)."""
    ids = sorted({webhook_id for webhook_id, *_ in events})
    live = set(
        conn.execute(sa.select(webhooks.c.id).where(webhooks.c.id.in_(ids), webhooks.c.enabled.is_(True))).scalars()
    )
    rows = []
    for webhook_id, event_id, change, at in events:
        if webhook_id in live:
            delivery_id = store.new_id()
            payload = store.event_payload(delivery_id, event_id, webhook_id, change, at)
            rows.append(store.delivery_row(delivery_id, webhook_id, change.action, payload, at))
    return rows


class Webhooks:
    """The webhook machinery of one server process: the hook, the pull flusher, the dispatcher."""

    def __init__(self, db: Database, *, timeout: float, max_attempts: int) -> None:
        self.db = db
        self.events = WebhookEvents()
        self.dispatcher = WebhookDispatcher(
            db, timeout=timeout, max_attempts=max_attempts, active=lambda: self.events.any
        )
        self.events.on_commit = self.dispatcher.wake
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.reload()
        self.dispatcher.start()
        self._task = asyncio.get_running_loop().create_task(self._maintain())

    async def reload(self) -> None:
        """Read the webhooks now: after this process changed them (the API does)."""
        self.events.invalidate()
        await self.db.read(self.events.load)

    def wake(self) -> None:
        """New deliveries were queued outside the hook (a ping, a redelivery)."""
        self.dispatcher.wake()

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            try:
                await self.events.flush(self.db)
                if self.events.stale():
                    await self.db.read(self.events.load)
            except Exception:  # a failed batch must not stop the webhooks
                log.exception("webhook upkeep failed")

    async def stop(self) -> None:
        """Write the queued pulls and stop sending (before the database closes)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
            try:
                await self.events.flush(self.db)
            except Exception:
                log.exception("could not write the last pull events for webhooks")
        await self.dispatcher.stop()


def setup(registry: Registry, db: Database, settings: Settings) -> Webhooks:
    """Hook webhooks into ``registry``; the caller starts and stops the result with the server."""
    service = Webhooks(db, timeout=settings.webhook_timeout, max_attempts=settings.webhook_max_attempts)
    registry.hooks.add(service.events)
    return service
