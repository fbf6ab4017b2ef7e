"""Shared helpers for the tests of replicas behind a load balancer (test_deploy, test_replicas)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.clients import require, run
from tests.images import Image, read_layout, write_layout
from tests.server import RegistryServer

ADMIN_PASSWORD = "deploy-admin-pw"


def fetch_token(server: RegistryServer, base: str | None = None, scope: str = "repository:team/app:pull,push") -> str:
    r = httpx.get(
        (base or server.url) + "/token",
        params={"service": "dockyard", "scope": scope},
        auth=("admin", ADMIN_PASSWORD),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()["token"]


def upload_requests(server: RegistryServer) -> float:
    """Requests this replica answered on the upload routes (its own counters: per process)."""
    text = httpx.get(server.url + "/metrics", timeout=30).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "dockyard_http_requests":
            for sample in family.samples:
                if sample.name.endswith("_total") and "/blobs/uploads/" in sample.labels.get("route", ""):
                    total += sample.value
    return total


def skopeo(*args: str, registry: RegistryServer | None = None) -> subprocess.CompletedProcess[str]:
    return run([require("skopeo"), "--insecure-policy", *args], registry=registry)


def push_and_pull(tmp_path: Path, host: str, image: Image, name: str, registry: RegistryServer) -> None:
    """skopeo copies ``image`` to ``host`` and back; every byte must come back."""
    source = write_layout(tmp_path / f"source-{name.replace('/', '-')}", "v1", image)
    creds = f"admin:{ADMIN_PASSWORD}"
    ref = f"docker://{host}/{name}:v1"
    skopeo(
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        creds,
        f"oci:{source}:v1",
        ref,
        registry=registry,
    )
    back = tmp_path / f"back-{name.replace('/', '-')}"
    skopeo("copy", "--src-tls-verify=false", "--src-creds", creds, ref, f"oci:{back}:v1", registry=registry)
    layout = read_layout(back)
    assert layout.descriptor("v1")["digest"] == image.digest
    assert layout.blob(image.digest) == image.manifest.data
    for blob in image.blobs:
        assert layout.blob(blob.digest) == blob.data
