"""Engine set-up, migrations at start-up, and running queries off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig

T = TypeVar("T")
MIGRATIONS = Path(__file__).parent / "migrations"


def create_engine(url: str) -> sa.Engine:
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
    return sa.create_engine(url, pool_pre_ping=True, pool_size=8)


def alembic_config(conn: sa.Connection) -> AlembicConfig:
    """Alembic pointed at the packaged migrations and an open connection (no alembic.ini)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision; safe to run at every start."""
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")


class Database:
    """Runs blocking SQLAlchemy work off the event loop.

    SQLite allows one writer at a time, so writes get a single thread: that serialises them in
    this process instead of making them wait on file locks. Reads get their own threads (WAL
    lets them run beside the writer), so a pull never queues behind a commit's fsync.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self._sqlite = url.startswith("sqlite")
        self._writer = ThreadPoolExecutor(max_workers=1 if self._sqlite else 8, thread_name_prefix="db-write")
        self._readers = ThreadPoolExecutor(max_workers=2 if self._sqlite else 8, thread_name_prefix="db-read")

    def migrate(self) -> None:
        migrate(self.engine)

    def _in_transaction(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with self.engine.begin() as conn:
            return fn(conn, *args)

    def _relaxed(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
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
