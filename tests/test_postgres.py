"""PostgreSQL as the metadata database: settings, migrations, ``dockyard db``, and the races that
several writers open up (SQLite has one writer; PostgreSQL transactions of one process, and of
several replicas, interleave).

These run on every backend configuration: they start the throwaway cluster of tests/backends.py
themselves. The interleavings are forced, not hoped for: one transaction holds its locks while the
test waits until PostgreSQL reports the other one blocked on them (pg_stat_activity), then lets
the first commit.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from dockyard import config
from dockyard.meta import collect, store
from dockyard.meta.db import Database, create_engine, current_revision, display_url, engine_url, head_revision
from dockyard.meta.tables import blobs, metadata, quotas
from dockyard.registry import quotas as quota_queries
from tests import backends
from tests.oci import assert_no_traceback, digest, make_image, push_blob, push_manifest
from tests.server import RegistryServer


@pytest.fixture
def pg_url(tmp_path: Path) -> str:
    """A fresh, empty PostgreSQL database of the test's own (whatever the backend under test)."""
    cluster = backends.postgres()
    name = "t_" + uuid.uuid4().hex[:16]
    cluster.create_database(name)
    return cluster.url(name)


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    database = Database(pg_url)
    database.migrate()
    yield database
    database.close()


def dockyard(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dockyard", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


# -- settings --------------------------------------------------------------------------------


def test_postgres_urls_mean_psycopg_3(monkeypatch: pytest.MonkeyPatch):
    for scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        url = engine_url(f"{scheme}://u:secret@db.example:6432/registry")
        assert (url.drivername, url.host, url.port, url.database) == (
            "postgresql+psycopg",
            "db.example",
            6432,
            "registry",
        )
    shown = display_url("postgres://u:secret@db.example/registry")
    assert "secret" not in shown and shown.startswith("postgresql+psycopg://u:***@db.example/registry")
    monkeypatch.setenv("DOCKYARD_DATABASE_URL", "postgres://u:pw@h/db")
    monkeypatch.setenv("DOCKYARD_DATABASE_POOL_SIZE", "6")
    settings = config.load()
    assert (settings.database_url, settings.database_pool_size) == ("postgres://u:pw@h/db", 6)
    with pytest.raises(config.ConfigError, match="postgresql://"):
        config.load(database_url="mysql://u@h/db")
    with pytest.raises(config.ConfigError, match="at least 2"):
        config.load(database_pool_size=1)


def test_the_pool_splits_between_writers_and_readers(pg_url: str):
    database = Database(pg_url, pool_size=6)
    try:
        assert (database._writer._max_workers, database._readers._max_workers) == (3, 3)
        assert database.engine.pool.size() == 6
        assert database.engine.dialect.driver == "psycopg"
    finally:
        database.close()


def test_serve_takes_the_database_url_flag_and_hides_its_password(pg_url: str, tmp_path: Path):
    url = pg_url.replace("postgres@", "postgres:not-shown@")  # trust authentication ignores it
    server = RegistryServer(tmp_path / "data", extra_args=["--database-url", url])
    server.extra_env["DOCKYARD_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"  # the flag wins
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            name = f"flag/{uuid.uuid4().hex[:8]}"
            push_blob(c, name, b"on postgres")
        assert name in [row[0] for row in _sql(pg_url, "SELECT name FROM repositories")]
        assert not (tmp_path / "data" / "dockyard.db").exists()
    finally:
        server.stop()
    assert "not-shown" not in server.log() and "postgresql+psycopg://postgres:***@" in server.log()


# -- migrations ------------------------------------------------------------------------------


def test_the_migrations_build_the_schema_of_tables_py_on_postgresql(pg_url: str):
    engine = create_engine(pg_url)
    try:
        from dockyard.meta.db import migrate

        migrate(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_db_upgrade_and_current(pg_url: str, tmp_path: Path):
    head = head_revision()
    empty = dockyard("db", "current", "--database-url", pg_url)
    assert empty.returncode == 0 and empty.stdout.startswith("none"), empty.stderr
    up = dockyard("db", "upgrade", "--database-url", pg_url)
    assert up.returncode == 0, up.stderr
    assert f"upgraded from an empty database to {head} (head)" in up.stdout
    data_dir = str(tmp_path / "data")
    again = dockyard("db", "upgrade", "--data-dir", data_dir, DOCKYARD_DATABASE_URL=pg_url)
    assert again.returncode == 0 and f"already at {head} (head)" in again.stdout, again.stderr
    assert dockyard("db", "current", "--database-url", pg_url).stdout == f"{head} (head)\n"
    # SQLite in the data folder, as serve would use it.
    sqlite = dockyard("db", "upgrade", "--data-dir", data_dir)
    assert sqlite.returncode == 0 and (Path(data_dir) / "dockyard.db").exists(), sqlite.stderr
    assert dockyard("db", "current", "--data-dir", data_dir).stdout == f"{head} (head)\n"
    bad = dockyard("db", "current", "--database-url", "postgresql://nobody:pw@127.0.0.1:1/none")
    assert bad.returncode == 1 and "cannot read postgresql+psycopg://nobody:***@" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_replicas_starting_together_migrate_one_at_a_time(pg_url: str):
    """Without the advisory lock, two of these create alembic_version or the same table at once
    and one fails."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dockyard", "db", "upgrade", "--database-url", pg_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    assert sum("upgraded from an empty database" in out for out, _ in outputs) == 1, outputs
    engine = create_engine(pg_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


# -- races between writers -------------------------------------------------------------------


def _sql(url: str, query: str, **params: Any) -> list[sa.Row]:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(query), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def _blocked(url: str, waiting: int = 1) -> None:
    """Wait (no timed assertion: until PostgreSQL says so) for ``waiting`` sessions to wait on a
    lock another session holds."""
    while True:
        count = _sql(url, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")[0][0]
        if count >= waiting:
            return
        time.sleep(0.02)


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def _unreferenced_blob(db: Database, name: str, since: float) -> str:
    dgst = digest(uuid.uuid4().bytes)

    def add(conn: sa.Connection) -> None:
        store.add_blob(conn, name, dgst, 16, None)
        conn.execute(sa.update(blobs).where(blobs.c.digest == dgst).values(created_at=since, unreferenced_since=since))

    db.run_sync(add)
    return dgst


def test_a_collection_waits_for_a_manifest_that_references_its_blob(pg_db: Database, pg_url: str):
    dgst = _unreferenced_blob(pg_db, "race/a", since=time.time() - 7200)
    with pg_db.engine.connect() as push:
        trans = push.begin()
        store.lock_blobs(push, [dgst])  # a manifest PUT, after its check, before its commit
        assert store.missing_blobs(push, store.repository_id(push, "race/a"), [dgst]) == set()
        thread, out = _in_thread(lambda: pg_db.run_sync(collect.delete_blobs, [dgst], time.time() - 3600))
        _blocked(pg_url)
        push.execute(sa.update(blobs).where(blobs.c.digest == dgst).values(unreferenced_since=None))
        trans.commit()
    thread.join()
    assert out == [[]]  # re-checked after the wait: referenced now, so kept
    assert pg_db.run_sync(store.blob_size, dgst) == 16


def test_a_manifest_waiting_for_a_collection_finds_its_blob_gone(pg_db: Database, pg_url: str):
    dgst = _unreferenced_blob(pg_db, "race/b", since=time.time() - 7200)
    with pg_db.engine.connect() as gc:
        trans = gc.begin()
        assert [r.digest for r in collect.delete_blobs(gc, [dgst], time.time() - 3600)] == [dgst]

        def put(conn: sa.Connection) -> set[str]:
            store.lock_blobs(conn, [dgst])
            return store.missing_blobs(conn, store.repository_id(conn, "race/b"), [dgst])

        thread, out = _in_thread(lambda: pg_db.run_sync(put))
        _blocked(pg_url)
        trans.commit()
    thread.join()
    assert out == [{dgst}]  # MANIFEST_BLOB_UNKNOWN, not a manifest that references nothing


def test_a_check_then_insert_that_loses_the_race_runs_again(pg_db: Database, pg_url: str):
    """set_quota looks for the row, then inserts: the other transaction's insert of the same key
    makes it fail with a unique violation, and the whole transaction runs again as an update."""
    with pg_db.engine.connect() as other:
        trans = other.begin()
        other.execute(sa.insert(quotas).values(namespace="race", limit_bytes=1, updated_at=time.time()))
        thread, out = _in_thread(lambda: pg_db.run_sync(quota_queries.set_quota, "race", 2048))
        _blocked(pg_url)
        trans.commit()
    thread.join()
    assert isinstance(out[0], quota_queries.QuotaStatus), out
    assert _sql(pg_url, "SELECT limit_bytes FROM quotas WHERE namespace = 'race'") == [(2048,)]


def test_deadlocks_are_run_again(pg_db: Database):
    """Two transactions that update two rows in opposite orders: PostgreSQL aborts one, which
    runs again and succeeds."""
    first, second = (_unreferenced_blob(pg_db, "race/d", since=1.0) for _ in range(2))
    barrier = threading.Barrier(2)

    def update(a: str, b: str) -> Callable[[sa.Connection], None]:
        state = {"attempt": 0}

        def fn(conn: sa.Connection) -> None:
            state["attempt"] += 1
            conn.execute(sa.update(blobs).where(blobs.c.digest == a).values(size=1))
            if state["attempt"] == 1:
                barrier.wait()  # both hold their first row
            conn.execute(sa.update(blobs).where(blobs.c.digest == b).values(size=2))

        return fn

    async def both() -> list[Any]:
        return await asyncio.gather(pg_db.run(update(first, second)), pg_db.run(update(second, first)))

    assert asyncio.run(both()) == [None, None]


def test_concurrent_pushes_of_the_same_content_never_fail(pg_url: str, tmp_path: Path):
    """Sixteen clients push the same layers, then the same manifest under the same tag, into a
    repository none of them created: every request succeeds (no 500 from a uniqueness race)."""
    server = RegistryServer(tmp_path / "data", env={"DOCKYARD_DATABASE_URL": pg_url}).start()
    name = f"same/{uuid.uuid4().hex[:8]}"
    image = make_image(layers=3, layer_size=2048)
    barrier = threading.Barrier(16)

    def push(_: int) -> str:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            barrier.wait()
            for blob in image.blobs:
                push_blob(c, name, blob)
            return push_manifest(c, name, "latest", image.content, image.media_type)

    try:
        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(push, range(16))) == {image.digest}
        with httpx.Client(base_url=server.url, timeout=60) as c:
            assert c.get(f"/v2/{name}/tags/list").json()["tags"] == ["latest"]
            assert c.get("/v2/_catalog").json()["repositories"] == [name]
    finally:
        server.stop()
    assert_no_traceback(server.log())


def test_a_stored_blob_is_told_from_a_new_one(pg_db: Database):
    """The caller of add_blob drops its own copy when the blob was already stored, and the
    collector's clock restarts: both hang on telling the two apart (an INSERT's rowcount is -1
    through psycopg, which once made every copy look new)."""
    dgst = digest(uuid.uuid4().bytes)
    assert pg_db.run_sync(store.add_blob, "again/a", dgst, 16, "first") is True
    pg_db.run_sync(lambda conn: conn.execute(sa.update(blobs).values(unreferenced_since=1.0)))
    assert pg_db.run_sync(store.add_blob, "again/b", dgst, 16, "second") is False
    row = pg_db.run_sync(lambda conn: conn.execute(sa.select(blobs).where(blobs.c.digest == dgst)).one())
    assert row.storage_key == "first" and row.unreferenced_since > 1.0
