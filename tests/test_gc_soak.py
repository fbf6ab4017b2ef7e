"""The GC soak test: writers push and re-tag images in a loop while collections run over and over.

Four writer processes (tests/soak_writer.py) share two repositories and a pool of base layers,
move tags between images and delete most images that lose their tags, for ``SOAK_SECONDS``
(60 by default). Meanwhile the server collects on a 0.3 s schedule with a 3 s grace period, and
this test runs ``dockyard gc`` from the command line as well (the two share a lease).

Afterwards: no push failed (in particular never with BLOB_UNKNOWN or MANIFEST_BLOB_UNKNOWN),
every image a writer left in place pulls back byte-identical, and once the grace period has
passed, a final collection leaves exactly the referenced content: no unreferenced blob row, no
manifest without a repository, no file without a row.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.server import RegistryServer

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
WRITERS = 4
GRACE = 3.0


def _gc(server: RegistryServer, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dockyard", "gc", "--json", "--data-dir", str(server.data_dir), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **server.extra_env},
    )


def test_gc_soak(tmp_path: Path):
    server = RegistryServer(
        tmp_path / "data", env={"DOCKYARD_GC_INTERVAL": "0.3", "DOCKYARD_GC_GRACE": str(GRACE)}
    ).start()
    try:
        reports = [tmp_path / f"writer-{i}.json" for i in range(WRITERS)]
        writers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.soak_writer",
                    server.url,
                    f"soak/r{i % 2}",
                    str(i),
                    str(SOAK_SECONDS),
                    str(out),
                ]
            )
            for i, out in enumerate(reports)
        ]
        cli_runs = cli_busy = 0
        while any(w.poll() is None for w in writers):
            done = _gc(server)
            if done.returncode == 0:
                cli_runs += 1
            else:
                assert "already running" in done.stderr, done.stderr
                cli_busy += 1
            time.sleep(1)
        assert all(w.returncode == 0 for w in writers)
        results = [json.loads(r.read_text()) for r in reports]

        failures = [f for r in results for f in r["failures"]]
        assert not failures, failures[:10]
        counts = {k: sum(r["counts"][k] for r in results) for k in results[0]["counts"]}
        print(f"\nsoak: {counts}, cli gc runs {cli_runs} (busy {cli_busy})")
        assert counts["pushes"] > 50 and counts["deletes"] > 20 and counts["blob_skips"] > 20
        with sqlite3.connect(server.data_dir / "dockyard.db") as conn:
            runs = conn.execute(
                "SELECT count(*), sum(json_extract(result, '$.blobs_removed')) FROM job_runs WHERE job = 'gc'"
            ).fetchone()
        assert runs[0] >= 20 and runs[1] > 0, runs  # collections ran throughout and did remove blobs

        with httpx.Client(base_url=server.url, timeout=60) as http:
            for i, result in enumerate(results):
                name = f"soak/r{i % 2}"
                for tag, digest in result["tags"].items():
                    r = http.get(f"/v2/{name}/manifests/{tag}")
                    assert r.status_code == 200 and "sha256:" + hashlib.sha256(r.content).hexdigest() == digest
                for digest, kept in result["kept"].items():
                    r = http.get(f"/v2/{name}/manifests/{digest}")
                    assert r.status_code == 200 and r.content == kept["manifest"].encode()
                    for blob, size in kept["blobs"].items():
                        b = http.get(f"/v2/{name}/blobs/{blob}")
                        assert b.status_code == 200, (blob, b.text)
                        assert len(b.content) == size and "sha256:" + hashlib.sha256(b.content).hexdigest() == blob

        time.sleep(GRACE + 0.5)
        server.stop()  # the final collections run alone
        assert _gc(server).returncode == 0  # manifests deleted last go; their blobs' clocks start
        time.sleep(GRACE + 0.5)
        final = _gc(server)
        assert final.returncode == 0, final.stderr
        with sqlite3.connect(server.data_dir / "dockyard.db") as conn:
            unreferenced = conn.execute(
                "SELECT count(*) FROM blobs WHERE digest NOT IN (SELECT target_digest FROM manifest_references)"
            ).fetchone()[0]
            unlinked = conn.execute(
                "SELECT count(*) FROM manifests WHERE digest NOT IN (SELECT digest FROM repository_manifests)"
            ).fetchone()[0]
            keys = {row[0] for row in conn.execute("SELECT storage_key FROM blobs")}
            uploads = conn.execute("SELECT count(*) FROM uploads").fetchone()[0]
        assert unreferenced == 0 and unlinked == 0 and uploads == 0
        files = {str(p.relative_to(server.data_dir)) for p in (server.data_dir / "blobs").rglob("*") if p.is_file()}
        assert files == keys
        expected = {blob for result in results for kept in result["kept"].values() for blob in kept["blobs"]}
        assert {k.split("/")[-1].split(".")[0] for k in keys} == {b.split(":")[1] for b in expected}
    finally:
        server.stop()
