"""Three stateless replicas on one PostgreSQL and one S3 store (SeaweedFS) behind nginx.

This is the deployment issue 6 is about, on one machine: every replica has a data folder of its
own (nothing on local disk is shared), the metadata is in PostgreSQL, the blobs in a bucket, the
token key comes from configuration, and nginx sends requests round robin. Real clients push and
pull through nginx; an upload's chunks land on different replicas; a replica killed with SIGKILL
in the middle of a push costs the client a retry through the others, never data; and the
scheduled collection runs once per interval across the three, not three times.

This module starts its own cluster and SeaweedFS (through ``tests.backends``) whatever
``DOCKYARD_TEST_BACKEND`` says, so it runs in the default test leg.
"""

from __future__ import annotations

import os
import random
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests import backends
from tests.deploy_helpers import ADMIN_PASSWORD, fetch_token, push_and_pull, upload_requests
from tests.images import random_image
from tests.nginx import Nginx, render_nginx
from tests.oci import digest
from tests.server import RegistryServer, free_port

pytestmark = pytest.mark.clients

GC_INTERVAL = 2.0  # seconds: short, so that a few intervals pass within the test
MiB = 1 << 20


@dataclass
class Cluster:
    servers: list[RegistryServer]
    nginx: Nginx
    database: str  # the shared metadata database's URL
    bucket: str

    def job_runs(self, job: str) -> list[tuple[str, float, float | None]]:
        from dockyard.meta.db import create_engine

        engine = create_engine(self.database)
        try:
            with engine.connect() as conn:
                rows = conn.exec_driver_sql(
                    "SELECT trigger, started_at, finished_at FROM job_runs WHERE job = %s ORDER BY started_at", (job,)
                )
                return [tuple(row) for row in rows]
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("replicas")
    pg = backends.postgres()
    name = f"dy_replicas_{secrets.token_hex(4)}"
    pg.create_database(name)
    s3 = backends.s3_env(root / "bucket")  # a bucket of its own on the session's SeaweedFS
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    env = {
        **s3,
        "DOCKYARD_DATABASE_URL": pg.url(name),
        "DOCKYARD_AUTH": "token",
        "DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "DOCKYARD_TOKEN_KEY": pem.decode(),  # one key for all, as a Kubernetes Secret gives it
        "DOCKYARD_TRUSTED_PROXIES": "127.0.0.1",
        "DOCKYARD_GC_INTERVAL": str(GC_INTERVAL),
    }
    for i in range(3):
        (root / f"replica-{i}").mkdir()
    servers = [RegistryServer(root / f"replica-{i}" / "data", env=env) for i in range(3)]
    port = free_port()
    nginx = Nginx(render_nginx(root / "nginx", port, [s.port for s in servers]), port)
    try:
        for server in servers:
            server.start(timeout=60)
        yield Cluster(servers, nginx.start(), pg.url(name), s3["DOCKYARD_S3_BUCKET"])
    finally:
        nginx.stop()
        for server in servers:
            server.stop()


def _ensure_running(cluster: Cluster) -> None:
    for server in cluster.servers:
        if server.proc is None or server.proc.poll() is not None:
            server.start(timeout=60)


def test_clients_push_and_pull_through_nginx(cluster: Cluster, tmp_path: Path):
    _ensure_running(cluster)
    before = [upload_requests(s) for s in cluster.servers]
    image = random_image(random.Random(secrets.randbits(32)), layers=3, big_layer=12 * MiB)
    push_and_pull(tmp_path, f"127.0.0.1:{cluster.nginx.port}", image, "team/app", cluster.servers[0])
    served = [upload_requests(s) - b for s, b in zip(cluster.servers, before, strict=True)]
    assert sum(1 for n in served if n) >= 2, served  # the push really was spread
    # The bytes are in the bucket, none on the replicas' disks.
    listed = backends.seaweedfs().client().list_objects_v2(Bucket=cluster.bucket)
    assert sum(o["Size"] for o in listed.get("Contents", [])) >= 12 * MiB
    for server in cluster.servers:
        assert not [p for p in server.data_dir.rglob("*") if p.is_file() and p.stat().st_size >= MiB]


def _auth(cluster: Cluster, name: str) -> dict[str, str]:
    token = fetch_token(cluster.servers[0], cluster.nginx.url, f"repository:{name}:pull,push")
    return {"Authorization": f"Bearer {token}"}


def test_an_upload_continues_on_other_replicas(cluster: Cluster):
    """POST on one replica, each PATCH on the next, the closing PUT on the first again; the
    chunks are larger than an S3 part and not multiples of it, so parts and the buffered tail
    both move between replicas through the database and the bucket."""
    _ensure_running(cluster)
    name = "team/chunks"
    headers = _auth(cluster, name)
    chunks = [os.urandom(n) for n in (7 * MiB + 123, 11 * MiB + 7, 3 * MiB + 999, 2 * MiB + 1)]
    data = b"".join(chunks)
    servers = cluster.servers
    r = httpx.post(f"{servers[0].url}/v2/{name}/blobs/uploads/", headers=headers, timeout=60)
    assert r.status_code == 202, r.text
    location, offset = r.headers["Location"], 0
    for i, chunk in enumerate(chunks[:-1]):
        replica = servers[(i + 1) % 3]
        r = httpx.patch(
            replica.url + location,
            content=chunk,
            headers={**headers, "Content-Type": "application/octet-stream",
                     "Content-Range": f"{offset}-{offset + len(chunk) - 1}"},
            timeout=120,
        )  # fmt: skip
        assert r.status_code == 202, r.text
        offset += len(chunk)
        assert r.headers["Range"] == f"0-{offset - 1}"
        location = r.headers["Location"]
    r = httpx.put(
        servers[0].url + location,
        params={"digest": digest(data)},
        content=chunks[-1],
        headers={**headers, "Content-Type": "application/octet-stream"},
        timeout=120,
    )
    assert r.status_code == 201, r.text
    for server in servers:
        r = httpx.get(f"{server.url}/v2/{name}/blobs/{digest(data)}", headers=headers, timeout=120,
                      follow_redirects=True)  # fmt: skip
        assert r.status_code == 200 and digest(r.content) == digest(data)


class _SlowBody:
    """A request body that sends ``data`` in pieces with pauses, so a test can kill the replica
    receiving it halfway through; ``sent`` says how much went out."""

    def __init__(self, data: bytes, piece: int = MiB, pause: float = 0.05) -> None:
        self.data, self.piece, self.pause, self.sent = data, piece, pause, 0
        self.halfway = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), self.piece):
            yield self.data[start : start + self.piece]
            self.sent = start + self.piece
            if self.sent >= len(self.data) // 2:
                self.halfway.set()
            time.sleep(self.pause)


def test_a_replica_killed_during_a_push_costs_a_retry_not_data(cluster: Cluster, tmp_path: Path):
    _ensure_running(cluster)
    name = "team/killed"
    headers = _auth(cluster, name)
    data = os.urandom(64 * MiB + 17)
    victim, others = cluster.servers[1], [cluster.servers[0], cluster.servers[2]]
    r = httpx.post(f"{others[0].url}/v2/{name}/blobs/uploads/", headers=headers, timeout=60)
    location = r.headers["Location"]
    first = 9 * MiB
    r = httpx.patch(others[0].url + location, content=data[:first], timeout=120,
                    headers={**headers, "Content-Type": "application/octet-stream",
                             "Content-Range": f"0-{first - 1}"})  # fmt: skip
    assert r.status_code == 202, r.text

    # The next chunk streams to the victim, which dies halfway through it.
    body = _SlowBody(data[first:])
    failure: list[BaseException] = []

    def send() -> None:
        try:
            httpx.patch(victim.url + location, content=iter(body), timeout=120,
                        headers={**headers, "Content-Type": "application/octet-stream"})  # fmt: skip
        except httpx.HTTPError as error:
            failure.append(error)

    sender = threading.Thread(target=send)
    sender.start()
    assert body.halfway.wait(120)
    victim.kill()
    sender.join(120)
    assert failure, "the request to the killed replica cannot have succeeded"

    # The client's retry, through nginx (which now skips the dead replica): ask where the upload
    # stands, send the rest from there, close it. Nothing the victim half-received is visible.
    with httpx.Client(base_url=cluster.nginx.url, headers=headers, timeout=120) as http:
        r = http.get(location)
        assert r.status_code == 204, r.text
        offset = int(r.headers["Range"].split("-")[1]) + 1
        assert first <= offset <= len(data)
        assert http.head(f"/v2/{name}/blobs/{digest(data)}").status_code == 404
        r = http.put(location, params={"digest": digest(data)}, content=data[offset:],
                     headers={"Content-Type": "application/octet-stream",
                              "Content-Range": f"{offset}-{len(data) - 1}"})  # fmt: skip
        assert r.status_code == 201, r.text
        for _ in range(4):  # round robin over the survivors
            r = http.get(f"/v2/{name}/blobs/{digest(data)}", follow_redirects=True)
            assert r.status_code == 200 and digest(r.content) == digest(data)

    # A real client whose push dies with a replica simply runs again, through the others.
    image = random_image(random.Random(secrets.randbits(32)), layers=2, big_layer=6 * MiB)
    push_and_pull(tmp_path, f"127.0.0.1:{cluster.nginx.port}", image, "team/after-kill", others[0])
    victim.start(timeout=60)


def test_the_scheduled_collection_runs_once_per_interval_across_replicas(cluster: Cluster):
    _ensure_running(cluster)
    time.sleep(GC_INTERVAL * 2)  # every replica's schedule is polling by now
    start = time.time()
    time.sleep(GC_INTERVAL * 6)
    end = time.time()
    runs = [r for r in cluster.job_runs("gc") if r[0] == "schedule" and start <= r[1] < end]
    # Three replicas polling independently would start ~18 runs in six intervals; once per
    # interval is six (give or take one at the window's edges, and one slot a replica may have
    # claimed a little late).
    assert 4 <= len(runs) <= 7, runs
    starts = [r[1] for r in runs]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= GC_INTERVAL * 0.5, gaps  # never two runs of one interval


def test_failed_logins_count_across_replicas(cluster: Cluster):
    """Ten failures spread over the replicas lock the client out on all of them: the count is in
    the database, not per process (which would allow ten per replica)."""
    _ensure_running(cluster)
    client = {"X-Forwarded-For": f"203.0.113.{random.randrange(1, 250)}"}  # the proxy's word, trusted here
    for i in range(10):
        server = cluster.servers[i % 3]
        r = httpx.get(f"{server.url}/token", params={"service": "dockyard"}, auth=("admin", "wrong"), headers=client)
        assert r.status_code == 401, r.text
    for server in cluster.servers:
        r = httpx.get(f"{server.url}/token", params={"service": "dockyard"}, auth=("admin", ADMIN_PASSWORD),
                      headers=client)  # fmt: skip
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1, r.text
    # Another client is not affected.
    r = httpx.get(f"{cluster.servers[0].url}/token", params={"service": "dockyard"}, auth=("admin", ADMIN_PASSWORD))
    assert r.status_code == 200
