"""Garbage collection against a real server and the real ``dockyard gc`` command.

The server runs with the schedule off (``gc_interval`` 0) so that each test decides when a
collection happens; the soak test (test_gc_soak.py) runs collections against live pushes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backends import blob_key, cli_env, read_stored, stored_keys, write_stored
from tests.backends import sql as backend_sql
from tests.oci import (
    assert_error,
    digest,
    make_image,
    push_blob,
    push_image,
    push_manifest,
    repo,
    start_upload,
)
from tests.server import RegistryServer

pytestmark = pytest.mark.core


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RegistryServer]:
    srv = RegistryServer(tmp_path / "data", env={"DOCKYARD_GC_INTERVAL": "0", "DOCKYARD_GC_GRACE": "10"}).start()
    yield srv
    srv.stop()


@pytest.fixture
def http(server: RegistryServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def gc(server: RegistryServer, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "dockyard", "gc", "--json", "--data-dir", str(server.data_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(server.data_dir, **server.extra_env),  # the server's settings (gc_grace) apply to the CLI too
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def sql(server: RegistryServer, query: str, *params: object) -> list[tuple]:
    return backend_sql(server.data_dir, query, *params)


def age_blobs(server: RegistryServer, seconds: float = 20) -> None:
    """Move every blob's clock back, as if ``seconds`` had passed (no sleeping through the grace
    period, and no race with the start-up time of ``dockyard gc`` on a busy machine)."""
    sql(server, "UPDATE blobs SET created_at = created_at - ?, unreferenced_since = unreferenced_since - ?",
        seconds, seconds)  # fmt: skip


def blob_rows(server: RegistryServer) -> set[str]:
    return {row[0] for row in sql(server, "SELECT digest FROM blobs")}


def test_a_deleted_images_unshared_blobs_go_and_shared_ones_stay(server: RegistryServer, http: httpx.Client):
    name = repo()
    base = make_image(layers=1)
    kept = push_image(http, name, "kept", image=base)
    doomed = make_image(layers=1)
    doomed.layers.append(kept.layers[0])  # shares the base layer with the kept image
    doomed.manifest["layers"].append(kept.manifest["layers"][0])
    push_image(http, name, "doomed", image=doomed)
    assert http.delete(f"/v2/{name}/manifests/{doomed.digest}").status_code == 202

    report = gc(server, "--grace", "0")
    assert report["manifests_removed"] == 1
    assert report["blobs_removed"] == 2  # the doomed image's config and own layer
    assert report["blob_bytes_freed"] == len(doomed.config) + len(doomed.layers[0])
    assert blob_rows(server) == {digest(b) for b in kept.blobs}
    assert stored_keys(server.data_dir, "blobs") == sorted(blob_key(server.data_dir, digest(b)) for b in kept.blobs)
    pulled = http.get(f"/v2/{name}/manifests/kept")
    assert pulled.status_code == 200
    for blob in kept.blobs:
        assert http.get(f"/v2/{name}/blobs/{digest(blob)}").content == blob
    assert_error(http.get(f"/v2/{name}/blobs/{digest(doomed.config)}"), 404, "BLOB_UNKNOWN")
    assert_error(http.get(f"/v2/{name}/manifests/{doomed.digest}"), 404, "MANIFEST_UNKNOWN")


def test_an_unreferenced_upload_is_kept_for_the_grace_period(server: RegistryServer, http: httpx.Client):
    name = repo()
    data = uuid.uuid4().bytes * 100
    push_blob(http, name, data)
    report = gc(server)  # grace 10 s from the server's settings
    assert report["blobs_removed"] == 0 and report["blobs_waiting"] == 1
    assert digest(data) in blob_rows(server)
    key = blob_key(server.data_dir, digest(data))
    age_blobs(server)
    report = gc(server)
    assert report["blobs_removed"] == 1 and report["blob_bytes_freed"] == len(data)
    assert key not in stored_keys(server.data_dir, "blobs")


def test_a_head_restarts_the_clock_so_the_push_that_checked_can_reference_it(
    server: RegistryServer, http: httpx.Client
):
    """The race that corrupts images in collectors that decide from a snapshot: a client finds a
    blob with HEAD, skips uploading it, and references it a moment later."""
    name = repo()
    image = make_image(layers=1)
    for blob in image.blobs:
        push_blob(http, name, blob)
    age_blobs(server)  # both blobs are now past the grace period, unreferenced
    for blob in image.blobs:
        assert http.head(f"/v2/{name}/blobs/{digest(blob)}").status_code == 200  # restarts each clock
    report = gc(server)
    assert report["blobs_removed"] == 0
    push_manifest(http, name, "v1", image.content, image.media_type)
    age_blobs(server)
    assert gc(server)["blobs_removed"] == 0  # referenced now: never collected
    assert http.get(f"/v2/{name}/blobs/{digest(image.layers[0])}").content == image.layers[0]


def test_a_collected_blob_is_uploaded_again_and_stored_once(server: RegistryServer, http: httpx.Client):
    name = repo()
    data = b"collected then pushed again" * 1000
    push_blob(http, name, data)
    gc(server, "--grace", "0")
    assert http.head(f"/v2/{name}/blobs/{digest(data)}").status_code == 404
    push_blob(http, name, data)
    assert http.get(f"/v2/{name}/blobs/{digest(data)}").content == data
    key = blob_key(server.data_dir, digest(data))
    assert read_stored(server.data_dir, key) == data
    assert len([k for k in stored_keys(server.data_dir, "blobs") if k == key]) == 1  # one copy stored


def test_dry_run_changes_nothing(server: RegistryServer, http: httpx.Client):
    name = repo()
    image = push_image(http, name, "v1")
    assert http.delete(f"/v2/{name}/manifests/{image.digest}").status_code == 202
    assert gc(server)["manifests_removed"] == 1  # its blobs' clocks start; 10 s grace
    orphan = push_blob(http, name, b"orphan blob")
    sql_before = sorted(sql(server, "SELECT digest, unreferenced_since FROM blobs"))
    files_before = stored_keys(server.data_dir, "blobs")
    report = gc(server, "--grace", "0", "--dry-run")
    assert report["dry_run"] and report["blobs_removed"] == 4
    assert set(report["removed"]) == {orphan, *(digest(b) for b in image.blobs)}
    assert sorted(sql(server, "SELECT digest, unreferenced_since FROM blobs")) == sql_before
    assert stored_keys(server.data_dir, "blobs") == files_before


def test_abandoned_uploads_go_and_active_ones_stay(server: RegistryServer, http: httpx.Client):
    name = repo()
    old = start_upload(http, name)
    assert http.patch(old, content=b"x" * 1000, headers={"Content-Type": "application/octet-stream"}).status_code == 202
    old_id = old.rstrip("/").split("/")[-1].split("?")[0]
    # Idle for two minutes, as far as the collector can tell (a real wait would race with the
    # start-up time of `dockyard gc` on a busy machine).
    sql(server, "UPDATE uploads SET updated_at = updated_at - 120 WHERE id = ?", old_id)
    fresh = start_upload(http, name)
    report = gc(server, "--upload-ttl", "60")
    assert report["uploads_removed"] == 1
    assert not [k for k in stored_keys(server.data_dir, "uploads") if old_id in k]
    assert_error(http.get(old), 404, "BLOB_UPLOAD_UNKNOWN")
    assert http.get(fresh).status_code == 204


def test_stray_files_without_a_row_are_removed(server: RegistryServer, http: httpx.Client):
    """A crash between the rename of a finished upload and its commit leaves a file nobody owns."""
    name = repo()
    kept = push_blob(http, name, b"kept")
    stray_hex = "ab" * 32
    stray = f"blobs/sha256/ab/{stray_hex}.{uuid.uuid4().hex}"
    write_stored(server.data_dir, stray, b"left behind by a crash")
    report = gc(server)
    assert report["orphan_files_removed"] == 1 and report["orphan_bytes_freed"] == len(b"left behind by a crash")
    assert stray not in stored_keys(server.data_dir, "blobs")
    assert blob_key(server.data_dir, kept) in stored_keys(server.data_dir, "blobs")


def test_the_lease_keeps_collections_from_overlapping(server: RegistryServer):
    sql(server, "SELECT 1")
    sql(server, "INSERT INTO leases (name, owner, expires_at) VALUES ('gc', 'elsewhere:1', ?)", time.time() + 60)
    out = subprocess.run(
        [sys.executable, "-m", "dockyard", "gc", "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        env=cli_env(server.data_dir),
    )
    assert out.returncode != 0 and "already running (elsewhere:1)" in out.stderr
    sql(server, "UPDATE leases SET expires_at = ?", time.time() - 1)  # its holder died
    assert gc(server)["dry_run"] is False


def test_runs_are_logged(server: RegistryServer):
    gc(server, "--dry-run")
    gc(server)
    runs = sql(server, "SELECT job, trigger, dry_run, finished_at IS NOT NULL, result FROM job_runs ORDER BY id")
    assert [r[:4] for r in runs] == [("gc", "cli", 1, 1), ("gc", "cli", 0, 1)]
    assert json.loads(runs[-1][4])["bytes_freed"] == 0


def test_the_server_collects_on_its_schedule(tmp_path: Path):
    server = RegistryServer(tmp_path / "data", env={"DOCKYARD_GC_INTERVAL": "0.5", "DOCKYARD_GC_GRACE": "0.5"}).start()
    try:
        with httpx.Client(base_url=server.url) as http:
            data = b"scheduled away"
            push_blob(http, repo(), data)
            deadline = time.monotonic() + 20
            while digest(data) in blob_rows(server) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert digest(data) not in blob_rows(server)
            assert sql(server, "SELECT count(*) FROM job_runs WHERE trigger = 'schedule'")[0][0] >= 1
    finally:
        server.stop()


def test_the_admin_api_runs_and_lists_collections(tmp_path: Path):
    server = RegistryServer(
        tmp_path / "data",
        env={"DOCKYARD_AUTH": "token", "DOCKYARD_ADMIN_PASSWORD": "gc-admin-pw", "DOCKYARD_GC_INTERVAL": "0"},
    ).start()
    try:
        subprocess.run(
            [sys.executable, "-m", "dockyard", "user", "add", "plain", "--password", "plain-pw-1",
             "--data-dir", str(server.data_dir)],
            check=True, capture_output=True, env=cli_env(server.data_dir),
        )  # fmt: skip
        admin, plain = ("admin", "gc-admin-pw"), ("plain", "plain-pw-1")
        with httpx.Client(base_url=server.url + "/api/v1", timeout=30) as api:
            r = api.post("/gc", params={"dry_run": "true"}, auth=admin)
            assert r.status_code == 200 and r.json()["dry_run"] is True
            assert api.post("/gc", auth=admin).json()["dry_run"] is False
            assert api.post("/gc", auth=plain).json()["errors"][0]["code"] == "DENIED"
            assert api.post("/gc", auth=None).status_code == 401
            assert api.post("/gc", params={"dry_run": "maybe"}, auth=admin).status_code == 400
            runs = api.get("/gc/runs", auth=admin).json()["runs"]
            assert [(r["trigger"], r["dry_run"]) for r in runs] == [("api", False), ("api", True)]
            assert api.get("/gc/runs", auth=plain).status_code == 403
            sql(server, "INSERT INTO leases VALUES ('gc', 'elsewhere:2', ?)", time.time() + 60)
            busy = api.post("/gc", auth=admin)
            assert busy.status_code == 409 and "elsewhere:2" in busy.json()["errors"][0]["message"]
    finally:
        server.stop()
