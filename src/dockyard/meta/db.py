"""Engine set-up, migrations at start-up, and running queries off the event loop."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

T = TypeVar("T")
MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)

# The advisory lock that serialises migrations across replicas starting at once: any 64-bit key
# no other application on the database uses; this one spells "dockyard" in ASCII.
MIGRATION_LOCK = int.from_bytes(b"dockyard", "big")
# PostgreSQL errors after which the whole transaction is run again, because a concurrent
# transaction caused them (SQLite's single writer never interleaves two): a serialization failure
# or a deadlock (the other transaction went on); a unique violation (another transaction inserted
# the key after this one looked: run again, the check sees the committed row); a foreign key
# violation (a collection deleted the manifest or blob row this one links to: run again, it
# inserts the row afresh or reports the blob unknown).
RETRY_SQLSTATES = {"40001", "40P01", "23505", "23503"}
ATTEMPTS = 6
DEFAULT_POOL_SIZE = 16


def engine_url(url: str) -> sa.URL:
    """The URL SQLAlchemy should open: ``postgresql://`` and ``postgres://`` (as libpq, Heroku and
    most hosting dashboards write them) mean PostgreSQL through psycopg 3, the driver dockyard ships."""
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def display_url(url: str) -> str:
    """The URL for logs and messages: without its password."""
    try:
        return engine_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(invalid database URL)"


def create_engine(url: str, pool_size: int = DEFAULT_POOL_SIZE) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets readers run beside the writer; FULL makes an acknowledged push durable.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # One connection per worker thread (``Database``) plus a few for work outside them (the
    # collector, start-up). pre_ping drops connections a database restart or a proxy's idle
    # timeout killed; recycling bounds a connection's age below common idle limits.
    return sa.create_engine(
        engine_url(url),
        pool_size=pool_size,
        max_overflow=4,
        pool_timeout=30,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"application_name": "dockyard", "connect_timeout": 10},
    )


def alembic_config(conn: sa.Connection) -> AlembicConfig:
    """Alembic pointed at the packaged migrations and an open connection (no alembic.ini)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def migrate(engine: sa.Engine) -> str | None:
    """Bring the schema to the newest revision; safe to run at every start. Returns the revision
    it found (None: an empty database), read under the lock.

    On PostgreSQL, replicas that start together take a transaction-scoped advisory lock first:
    one upgrades while the others wait, then find the schema at head and do nothing. (PostgreSQL
    runs DDL in the transaction, so a failed upgrade leaves the schema as it was.)"""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
        found = MigrationContext.configure(conn).get_current_revision()
        command.upgrade(alembic_config(conn), "head")
    return found


def current_revision(engine: sa.Engine) -> str | None:
    """The schema's revision (None: an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(getattr(exc, "orig", None), "sqlstate", None)


class Database:
    """Runs blocking SQLAlchemy work off the event loop.

    SQLite allows one writer at a time, so writes get a single thread: that serialises them in
    this process instead of making them wait on file locks. Reads get their own threads (WAL
    lets them run beside the writer), so a pull never queues behind a commit's fsync.
    """

    def __init__(self, url: str, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.url = url
        self.engine = create_engine(url, pool_size)
        self._sqlite = url.startswith("sqlite")
        # PostgreSQL: half the pool writes, half reads, so neither kind starves the other.
        writers = 1 if self._sqlite else max(1, pool_size // 2)
        readers = 2 if self._sqlite else max(1, pool_size - writers)
        self._writer = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="db-write")
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="db-read")

    def migrate(self) -> None:
        migrate(self.engine)

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Run a whole transaction again after an error that a concurrent transaction caused
        (see RETRY_SQLSTATES), with a short random back-off; SQLite's single writer has none."""
        for n in range(ATTEMPTS):
            try:
                return attempt()
            except sa.exc.DBAPIError as exc:
                state = _sqlstate(exc)
                if self._sqlite or state not in RETRY_SQLSTATES or n == ATTEMPTS - 1:
                    raise
                log.debug("transaction conflict (SQLSTATE %s), attempt %d: running it again", state, n + 1)
                time.sleep(random.uniform(0, 0.005 * 2**n))
        raise AssertionError("unreachable")

    def _in_transaction(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        def attempt() -> T:
            with self.engine.begin() as conn:
                return fn(conn, *args)

        return self._retrying(attempt)

    def _relaxed(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        return self._retrying(lambda: self._relaxed_once(fn, args))

    def _relaxed_once(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with self.engine.connect() as conn:
            if self._sqlite:
                # The safety level can only change outside a transaction. WAL stays consistent;
                # the next FULL commit makes this one durable too.
                conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
                conn.commit()
                try:
                    with conn.begin():
                        return fn(conn, *args)
                finally:
                    conn.exec_driver_sql("PRAGMA synchronous=FULL")
                    conn.commit()
            with conn.begin():
                # For this transaction only: the commit returns before the WAL reaches the disk.
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                return fn(conn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in one read-write transaction on the writer thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._in_transaction, fn, args)

    async def run_relaxed(self, fn: Callable[..., T], *args: Any) -> T:
        """Like ``run``, without waiting for the disk: for records that may be lost in a power
        failure without harm (an upload session the client would simply start again)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._relaxed, fn, args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a read-only ``fn(conn, *args)`` on a reader thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._in_transaction, fn, args)

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return self._in_transaction(fn, args)

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self.engine.dispose()
