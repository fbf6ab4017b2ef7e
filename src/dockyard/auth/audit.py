"""The audit log: who did what to which repository, from where, and whether it was allowed.

Events are queued in memory and written in batches by a background task: a pull is the hot
path (thousands per second) and must not wait for a database write of its own. A crash can
lose at most the last ``FLUSH_EVERY`` seconds of events; everything else is in the database,
queryable by actor, repository, action and time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from dockyard.meta.db import Database
from dockyard.meta.tables import audit_events

log = logging.getLogger("dockyard.audit")
FLUSH_EVERY = 1.0
MAX_QUEUE = 100_000
ACTIONS = ("login", "token", "push", "pull", "delete", "denied", "admin")
ADMIN = "admin"  # a change to accounts, credentials or access, through the admin API or the CLI


@dataclass(frozen=True, slots=True)
class Event:
    action: str
    actor: str  # user name, "org+robot", or "" for anonymous
    client: str
    repository: str | None = None
    reference: str | None = None  # digest or tag
    outcome: str = "ok"  # ok | denied | failed
    detail: str | None = None
    at: float = 0.0

    def row(self) -> dict[str, Any]:
        return {
            "at": self.at or time.time(),
            "action": self.action,
            "actor": _fit("actor", self.actor),
            "client": _fit("client", self.client),
            "repository": _fit("repository", self.repository),
            "reference": _fit("reference", self.reference),
            "outcome": self.outcome,
            "detail": _fit("detail", self.detail),
        }


def _fit(column: str, value: str | None) -> str | None:
    """What a client sent (a user name at a failed login, say) as its column can hold it: one
    value PostgreSQL refuses (a NUL, a string wider than the column; SQLite takes both) would
    otherwise lose the whole batch of events it was written with."""
    if value is None:
        return None
    value = value.replace("\x00", "\ufffd")
    width = getattr(audit_events.c[column].type, "length", None)
    return value[:width] if width else value


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: list[dict[str, Any]] = []
        self._task: asyncio.Task | None = None
        self.dropped = 0

    def record(self, event: Event) -> None:
        if len(self._queue) >= MAX_QUEUE:  # the database is stuck: keep serving, count the loss
            self.dropped += 1
            return
        self._queue.append(event.row())

    async def flush(self) -> None:
        batch, self._queue = self._queue, []
        if batch:
            await self.db.run_relaxed(_insert, batch)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            try:
                await self.flush()
            except Exception:  # a failed batch must not stop auditing
                log.exception("could not write audit events")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()


def _insert(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    conn.execute(sa.insert(audit_events), rows)


def write(conn: sa.Connection, event: Event) -> None:
    """Write one event now, in the caller's transaction. For the CLI: it has no running log to
    queue on, and a change and its record should commit (or roll back) together."""
    _insert(conn, [event.row()])


# -- what "admin" events say -------------------------------------------------------------------
# One wording for the admin API and the CLI, so that a search of the log finds both.


def target(namespace: str | None, repository: str | None) -> str:
    return f"namespace {namespace}" if namespace is not None else f"repository {repository}"


def granted(level: str, subject_type: str, subject: str, namespace: str | None, repository: str | None) -> str:
    return f"grant {level.lower()} to {subject_type} {subject} on {target(namespace, repository)}"


def revoked(subject_type: str, subject: str, namespace: str | None, repository: str | None) -> str:
    return f"revoke the grant of {subject_type} {subject} on {target(namespace, repository)}"


def query(
    conn: sa.Connection,
    *,
    actor: str | None = None,
    repository: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    since: float | None = None,
    until: float | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> Sequence[sa.Row]:
    """Newest first; ``before_id`` pages through older events (keyset pagination)."""
    q = sa.select(audit_events).order_by(audit_events.c.id.desc()).limit(max(1, min(limit, 1000)))
    for column, value in (
        (audit_events.c.actor, actor),
        (audit_events.c.repository, repository),
        (audit_events.c.action, action),
        (audit_events.c.outcome, outcome),
    ):
        if value is not None:
            q = q.where(column == value)
    if since is not None:
        q = q.where(audit_events.c.at >= since)
    if until is not None:
        q = q.where(audit_events.c.at < until)
    if before_id is not None:
        q = q.where(audit_events.c.id < before_id)
    return conn.execute(q).all()
