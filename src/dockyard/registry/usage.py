"""Counting pushes, pulls and bytes per repository and UTC day (the ``usage_daily`` table).

Pulls and bytes are counted on the event loop (``observed``) and flushed in batches, once a
second, in one write transaction: a pull is the hot path and must not wait for a write of its
own. The same flush moves ``repositories.last_pull_at`` and the pulled manifests'
``repository_manifests.last_pulled_at`` forward (retention's "keep what was pulled within").
A crash loses at most the last second of counts, like the audit log. Pushes are counted in the
manifest PUT's own transaction (``changed``): a push that commits is counted, one that rolls
back is not.

Repository names are resolved to ids inside the flush transaction, in one query per batch,
rather than from a cache: a repository removed and pushed again gets a new id, and a stale id
would point the counts at a row that is gone (or fail the whole batch on its foreign key).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from dockyard.meta import store
from dockyard.meta.db import Database
from dockyard.meta.tables import repositories, repository_manifests, usage_daily
from dockyard.registry.hooks import Change, NoHooks

log = logging.getLogger("dockyard.usage")
FLUSH_EVERY = 1.0
MAX_KEYS = 100_000  # (repository, day) and (repository, manifest) entries held between flushes
MAX_RETRIES = 10  # a batch that fails this many flushes in a row is dropped (and logged)
COUNTERS = ("pushes", "pulls", "bytes_served", "bytes_received")
_CHUNK = 500  # names per IN list: well below SQLite's limit on bound parameters

# (repository, day) -> [pulls, bytes served, bytes received]
Counts = dict[tuple[str, str], list[int]]
# (repository, manifest digest) -> time of its latest pull
Pulled = dict[tuple[str, str], float]


_DAY_SECONDS = 86400


@functools.lru_cache(maxsize=8)
def _day_name(day_number: int) -> str:
    return datetime.fromtimestamp(day_number * _DAY_SECONDS, UTC).strftime("%Y-%m-%d")


def utc_day(at: float) -> str:
    """``YYYY-MM-DD`` of a Unix time, in UTC: the key of ``usage_daily``. Called on every pull, so
    the formatting is done once per day (UTC days are whole multiples of 86,400 s of Unix time)."""
    return _day_name(int(at // _DAY_SECONDS))


class UsageRecorder(NoHooks):
    """The registry hook that keeps ``usage_daily``; ``start`` and ``stop`` run its flushes."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock
        self._counts: Counts = {}
        self._pulled: Pulled = {}
        self._task: asyncio.Task | None = None
        self._failures = 0
        self.dropped = 0  # observations not counted because the batch was full or kept failing

    # -- the registry's calls ---------------------------------------------------------------------

    def observed(self, change: Change) -> None:
        """'pull' (a manifest GET), 'serve' (blob bytes sent), 'upload' (blob bytes received)."""
        if change.action not in ("pull", "serve", "upload"):
            return
        at = change.at or self._clock()
        key = (change.repository, utc_day(at))
        counts = self._counts.get(key)
        if counts is None:
            if len(self._counts) >= MAX_KEYS:  # the database is stuck: keep serving, count the loss
                self.dropped += 1
                return
            counts = self._counts[key] = [0, 0, 0]
        if change.action == "pull":
            counts[0] += 1
            pulled = (change.repository, change.digest)
            if pulled in self._pulled:
                self._pulled[pulled] = max(self._pulled[pulled], at)
            elif len(self._pulled) < MAX_KEYS:
                self._pulled[pulled] = at
        elif change.action == "serve":
            counts[1] += change.size or 0
        else:
            counts[2] += change.size or 0

    def changed(self, conn: sa.Connection, change: Change) -> None:
        """A manifest PUT is a push; counted in its transaction (``last_push_at`` is set by the
        store in the same transaction)."""
        if change.action != "push":
            return
        repo_id = store.repository_id(conn, change.repository)
        if repo_id is not None:
            add_daily(conn, [{"repository_id": repo_id, "day": utc_day(change.at or self._clock()), "pushes": 1}])

    # -- flushing ---------------------------------------------------------------------------------

    async def flush(self) -> None:
        counts, pulled = self._counts, self._pulled
        if not counts and not pulled:
            return
        self._counts, self._pulled = {}, {}
        try:
            await self.db.run_relaxed(write_batch, counts, pulled)
        except BaseException:
            self._failures += 1
            if self._failures < MAX_RETRIES:
                self._merge(counts, pulled)  # try again with the next flush
            else:
                self._failures = 0
                self.dropped += sum(c[0] for c in counts.values())
                log.error("dropped a batch of usage counts after %d failed writes", MAX_RETRIES)
            raise
        self._failures = 0

    def _merge(self, counts: Counts, pulled: Pulled) -> None:
        for key, values in counts.items():
            mine = self._counts.setdefault(key, [0, 0, 0])
            for i, value in enumerate(values):
                mine[i] += value
        for key, at in pulled.items():
            self._pulled[key] = max(at, self._pulled.get(key, at))

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            try:
                await self.flush()
            except Exception:  # a failed batch must not stop the counting
                log.exception("could not write usage counts")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop the flushes and write what is left."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.flush()
        except Exception:
            log.exception("could not write the last usage counts")


# -- the writes (on the database's writer thread) --------------------------------------------------


def add_daily(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Add ``rows`` (repository_id, day and some of ``COUNTERS``) to ``usage_daily``: one upsert
    whose conflict branch adds, so concurrent writers (replicas) never lose each other's counts."""
    if not rows:
        return
    rows = [{**dict.fromkeys(COUNTERS, 0), **row} for row in rows]
    stmt = store._dialect(conn).insert(usage_daily)
    stmt = stmt.on_conflict_do_update(
        index_elements=[usage_daily.c.repository_id, usage_daily.c.day],
        set_={name: usage_daily.c[name] + stmt.excluded[name] for name in COUNTERS},
    )
    conn.execute(stmt, rows)


def repository_ids(conn: sa.Connection, names: Iterable[str]) -> dict[str, int]:
    wanted = sorted(set(names))
    found: dict[str, int] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        q = sa.select(repositories.c.name, repositories.c.id).where(repositories.c.name.in_(chunk))
        found.update({name: repo_id for name, repo_id in conn.execute(q)})
    return found


def write_batch(conn: sa.Connection, counts: Counts, pulled: Pulled) -> None:
    """One flush: add the counts, then move the last-pull times forward (never backward: a batch
    retried after a newer one must not undo it). Repositories deleted meanwhile are skipped."""
    ids = repository_ids(conn, {name for name, _ in counts} | {name for name, _ in pulled})
    add_daily(
        conn,
        [
            {"repository_id": ids[name], "day": day, "pulls": p, "bytes_served": s, "bytes_received": r}
            for (name, day), (p, s, r) in counts.items()
            if name in ids
        ],
    )
    last_pull: dict[int, float] = {}
    for (name, _digest), at in pulled.items():
        if name in ids:
            last_pull[ids[name]] = max(at, last_pull.get(ids[name], at))
    if last_pull:
        conn.execute(
            sa.update(repositories)
            .where(
                repositories.c.id == sa.bindparam("rid"),
                sa.or_(repositories.c.last_pull_at.is_(None), repositories.c.last_pull_at < sa.bindparam("at")),
            )
            .values(last_pull_at=sa.bindparam("at")),
            [{"rid": repo_id, "at": at} for repo_id, at in last_pull.items()],
        )
    manifests = [{"rid": ids[name], "dg": digest, "at": at} for (name, digest), at in pulled.items() if name in ids]
    if manifests:
        column = repository_manifests.c.last_pulled_at
        conn.execute(
            sa.update(repository_manifests)
            .where(
                repository_manifests.c.repository_id == sa.bindparam("rid"),
                repository_manifests.c.digest == sa.bindparam("dg"),
                sa.or_(column.is_(None), column < sa.bindparam("at")),
            )
            .values(last_pulled_at=sa.bindparam("at")),
            manifests,
        )
