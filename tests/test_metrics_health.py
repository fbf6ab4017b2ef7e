"""``/metrics``, ``/healthz`` and ``/readyz`` on a real ``dockyard serve``.

Metrics are scraped before and after known traffic and parsed with prometheus_client's own
parser; each server here serves only this module's requests, so the differences are exact.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.oci import assert_no_traceback, digest, push_blob, push_image, repo
from tests.server import RegistryServer, free_port

TOKEN = "scrape-secret-123"
MANIFEST_ROUTE = "/v2/{name}/manifests/{reference}"
BLOB_ROUTE = "/v2/{name}/blobs/{digest}"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


class _Receiver(BaseHTTPRequestHandler):
    """A webhook endpoint that accepts everything."""

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def _cli(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "dockyard", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done


class Scraper:
    def __init__(self, server: RegistryServer, metrics_port: int) -> None:
        self.server = server
        self.metrics_port = metrics_port
        self.last_size = 0

    def scrape(self) -> Samples:
        r = httpx.get(f"{self.server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain")
        self.last_size = len(r.content)
        return parse(r.text)


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory, receiver: str) -> Iterator[Scraper]:
    data_dir = tmp_path_factory.mktemp("metrics") / "data"
    _cli(data_dir, "webhook", "add", receiver, "--namespace", "hooked")
    metrics_port = free_port()
    env = {"DOCKYARD_METRICS_TOKEN": TOKEN, "DOCKYARD_METRICS_PORT": str(metrics_port)}
    server = RegistryServer(data_dir, env=env).start()
    yield Scraper(server, metrics_port)
    server.stop()
    assert_no_traceback(server.log())


# -- traffic --------------------------------------------------------------------------------------


def test_requests_are_counted_by_route_pattern_method_and_status(watched: Scraper):
    name = repo("m")
    before = watched.scrape()
    with httpx.Client(base_url=watched.server.url, timeout=60) as c:
        image = push_image(c, name, "v1", layers=1, layer_size=1000)
        for _ in range(3):
            assert c.get(f"/v2/{name}/manifests/v1").status_code == 200
        assert c.get(f"/v2/{name}/manifests/nope").status_code == 404
        assert c.get(f"/v2/{name}/blobs/{digest(image.layers[0])}").status_code == 200
        assert c.get("/no/such/path").status_code == 404
    after = watched.scrape()

    def delta(metric: str, **labels: str) -> float:
        return grew(before, after, metric, **labels)

    requests = "dockyard_http_requests_total"
    assert delta(requests, route=MANIFEST_ROUTE, method="GET", status="200") == 3
    assert delta(requests, route=MANIFEST_ROUTE, method="GET", status="404") == 1
    assert delta(requests, route=MANIFEST_ROUTE, method="PUT", status="201") == 1
    assert delta(requests, route="/v2/{name}/blobs/uploads/", method="POST", status="201") == 2
    assert delta(requests, route=BLOB_ROUTE, method="GET", status="200") == 1
    assert delta(requests, route="unmatched", method="GET", status="404") == 1
    # The pattern, never the path: no series names the repository.
    assert not any(name in dict(labels).get("route", "") for _, labels in after)
    histogram = "dockyard_http_request_duration_seconds_count"
    assert delta(histogram, route=MANIFEST_ROUTE, method="GET") == 4
    assert delta(histogram, route=MANIFEST_ROUTE, method="PUT") == 1
    assert value(
        after, "dockyard_http_request_duration_seconds_bucket", route=MANIFEST_ROUTE, method="GET", le="+Inf"
    ) == (value(after, histogram, route=MANIFEST_ROUTE, method="GET"))
    # Bodies read: the two blobs and the manifest.
    pushed = len(image.config) + len(image.layers[0]) + len(image.content)
    assert delta("dockyard_http_received_bytes_total") == pushed


def test_bytes_sent_count_blob_bodies_once(watched: Scraper):
    name = repo("s")
    big = os.urandom(300_000)  # sent from a file (sendfile), not from memory
    with httpx.Client(base_url=watched.server.url, timeout=60) as c:
        dgst = push_blob(c, name, big)
        before = watched.scrape()
        first_scrape = watched.last_size  # its own body is counted once it has been answered
        assert c.get(f"/v2/{name}/blobs/{dgst}").content == big
        r = c.get(f"/v2/{name}/blobs/{dgst}", headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == big[10:20]
        assert c.head(f"/v2/{name}/blobs/{dgst}").status_code == 200
    after = watched.scrape()
    sent = value(after, "dockyard_http_sent_bytes_total") - value(before, "dockyard_http_sent_bytes_total")
    assert sent == first_scrape + len(big) + 10


def test_active_uploads_and_stored_bytes(watched: Scraper):
    name = repo("u")
    before = watched.scrape()
    with httpx.Client(base_url=watched.server.url, timeout=60) as c:
        location = c.post(f"/v2/{name}/blobs/uploads/").headers["Location"]
        during = watched.scrape()
        assert value(during, "dockyard_uploads_active") == value(before, "dockyard_uploads_active") + 1
        assert c.delete(location).status_code == 204
        assert value(watched.scrape(), "dockyard_uploads_active") == value(before, "dockyard_uploads_active")
        blob = os.urandom(1234)
        push_blob(c, name, blob)
    after = watched.scrape()
    grown = value(after, "dockyard_storage_bytes", kind="blob") - value(before, "dockyard_storage_bytes", kind="blob")
    assert grown == 1234
    blobs = value(after, "dockyard_storage_objects", kind="blob") - value(
        before, "dockyard_storage_objects", kind="blob"
    )
    assert blobs == 1
    assert value(after, "dockyard_database_up") == 1


def test_garbage_collections_from_the_command_line_are_counted(watched: Scraper):
    before = watched.scrape()
    with httpx.Client(base_url=watched.server.url, timeout=60) as c:
        push_blob(c, repo("gc"), os.urandom(777))  # referenced by nothing
    done = _cli(watched.server.data_dir, "gc", "--json", "--grace", "0")
    freed = json.loads(done.stdout)["bytes_freed"]
    assert freed >= 777
    after = watched.scrape()
    runs = value(after, "dockyard_gc_runs_total", trigger="cli") - value(
        before, "dockyard_gc_runs_total", trigger="cli"
    )
    assert runs == 1
    assert value(after, "dockyard_gc_bytes_freed_total") - value(before, "dockyard_gc_bytes_freed_total") == freed
    _cli(watched.server.data_dir, "gc", "--dry-run", "--grace", "0")  # dry runs free nothing: not counted
    assert value(watched.scrape(), "dockyard_gc_runs_total", trigger="cli") == value(
        after, "dockyard_gc_runs_total", trigger="cli"
    )


def test_webhook_deliveries_are_counted(watched: Scraper):
    before = value(watched.scrape(), "dockyard_webhook_deliveries_total", status="delivered")
    with httpx.Client(base_url=watched.server.url, timeout=60) as c:
        push_image(c, f"hooked/{repo('w')}", "v1", layers=1, layer_size=100)
    deadline = time.monotonic() + 60
    while value(watched.scrape(), "dockyard_webhook_deliveries_total", status="delivered") < before + 1:
        assert time.monotonic() < deadline, "the push event was not delivered"
        time.sleep(0.2)
    assert value(watched.scrape(), "dockyard_webhook_deliveries_total", status="delivered") == before + 1


# -- access ------------------------------------------------------------------------------------


def test_the_token_protects_metrics(watched: Scraper):
    url = f"{watched.server.url}/metrics"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": TOKEN}).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_metrics_on_their_own_port(watched: Scraper):
    side = f"http://127.0.0.1:{watched.metrics_port}"
    assert httpx.get(f"{side}/metrics").status_code == 401
    r = httpx.get(f"{side}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and "dockyard_http_requests_total" in r.text
    # Only metrics there: no registry.
    assert httpx.get(f"{side}/v2/").status_code == 404
    assert httpx.get(f"{side}/healthz").status_code == 404


# -- health --------------------------------------------------------------------------------------


def test_health_and_readiness(watched: Scraper):
    r = httpx.get(f"{watched.server.url}/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = httpx.get(f"{watched.server.url}/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready", "checks": {"database": "ok", "storage": "ok"}}
    # The storage probe cleans up after itself.
    assert not any((watched.server.data_dir / "_health").glob("*"))


def test_readiness_fails_when_storage_cannot_be_written(fresh_registry: RegistryServer):
    url = f"{fresh_registry.url}/readyz"
    assert httpx.get(url).status_code == 200
    # A file where the probe needs a folder: no write goes through, whoever runs the server (root too).
    probe_dir = fresh_registry.data_dir / "_health"
    for child in probe_dir.glob("*"):
        child.unlink()
    probe_dir.rmdir()
    probe_dir.write_bytes(b"in the way")
    r = httpx.get(url)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "unavailable" and body["checks"]["database"] == "ok"
    assert body["checks"]["storage"] != "ok"
    assert httpx.get(f"{fresh_registry.url}/healthz").status_code == 200  # alive, just not ready
    probe_dir.unlink()
    assert httpx.get(url).status_code == 200


def test_readiness_fails_when_the_database_is_unreadable(tmp_path: Path):
    server = RegistryServer(tmp_path / "data").start()
    try:
        url = f"{server.url}/readyz"
        assert httpx.get(url).status_code == 200
        db_file = server.data_dir / "dockyard.db"
        # Move every committed page into the database file, then destroy the file in place (the
        # server keeps it open, so removing it would not be noticed): the next read finds no database.
        deadline = time.monotonic() + 30
        while True:
            check = sqlite3.connect(db_file)
            try:
                busy = check.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            finally:
                check.close()
            if not busy:
                break
            assert time.monotonic() < deadline, "the database never became idle"
            time.sleep(0.1)
        size = db_file.stat().st_size
        with open(db_file, "r+b") as f:
            f.write(b"\0" * size)
            f.flush()
            os.fsync(f.fileno())
        r = httpx.get(url)
        assert r.status_code == 503, r.text
        checks = r.json()["checks"]
        assert checks["database"] != "ok" and checks["storage"] == "ok"
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.kill()


def test_probes_and_metrics_need_no_registry_token_and_are_not_audited(tmp_path: Path):
    env = {"DOCKYARD_AUTH": "token", "DOCKYARD_ADMIN_PASSWORD": "probe-admin-123"}
    server = RegistryServer(tmp_path / "data", env=env).start()
    try:
        assert httpx.get(f"{server.url}/v2/").status_code == 401  # the registry itself wants a token
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        assert httpx.get(f"{server.url}/metrics").status_code == 200  # no metrics_token set
        # A failed login is audited; once it is in the log, anything the probes wrote would be too.
        assert httpx.get(f"{server.url}/token", auth=("nobody", "wrong-password")).status_code == 401
        deadline = time.monotonic() + 60
        while True:
            done = _cli(server.data_dir, "audit", "--json", env={"DOCKYARD_AUTH": "token"})
            events = [json.loads(line) for line in done.stdout.splitlines()]
            if any(e["action"] == "login" and e["actor"] == "nobody" for e in events):
                break
            assert time.monotonic() < deadline, events
            time.sleep(0.2)
        assert all(e["action"] == "login" for e in events), events
    finally:
        server.stop()
    assert_no_traceback(server.log())
