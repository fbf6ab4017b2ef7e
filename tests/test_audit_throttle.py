"""The audit log and brute-force protection, against a real server with token auth on."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.oci import push_image, repo
from tests.server import RegistryServer

ADMIN_PASSWORD = "audit-admin-pw"


def _cli(server: RegistryServer, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "dockyard", *args, "--data-dir", str(server.data_dir)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, (args, out.stderr)
    return out.stdout


@pytest.fixture
def server(tmp_path) -> Iterator[RegistryServer]:
    srv = RegistryServer(tmp_path / "data", env={"DOCKYARD_AUTH": "token", "DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD})
    srv.start()
    _cli(srv, "user", "add", "alice", "--password", "alice-pw-123")
    yield srv
    srv.stop()


def _token(server: RegistryServer, user: str | None, password: str | None, scopes: list[str]) -> httpx.Response:
    auth = (user, password) if user else None
    return httpx.get(f"{server.url}/token", params={"service": "dockyard", "scope": scopes}, auth=auth)


def _events(server: RegistryServer, *filters: str, want: int = 1) -> list[dict]:
    """Events are written in batches about once a second: poll until they are there."""
    deadline = time.monotonic() + 20
    while True:
        found = [json.loads(line) for line in _cli(server, "audit", "--json", *filters).splitlines()]
        if len(found) >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def test_pushes_pulls_deletes_logins_and_denials_are_audited(server: RegistryServer):
    name = f"alice/{repo('audited')}"
    token = _token(server, "alice", "alice-pw-123", [f"repository:{name}:pull,push,delete"]).json()["token"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as c:
        image = push_image(c, name, "v1")
        assert c.get(f"/v2/{name}/manifests/v1").status_code == 200
        assert c.head(f"/v2/{name}/manifests/v1").status_code == 200  # an existence check, not a pull
        assert c.delete(f"/v2/{name}/manifests/v1").status_code == 202
    assert _token(server, "alice", "wrong", []).status_code == 401
    other = f"admin/{repo('secret')}"
    denied = _token(server, "alice", "alice-pw-123", [f"repository:{other}:pull"]).json()["token"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {denied}"}) as c:
        assert c.get(f"/v2/{other}/manifests/v1").status_code == 401

    pushes = _events(server, "--action", "push", "--repository", name)
    assert [(e["actor"], e["reference"], e["detail"], e["client"]) for e in pushes] == [
        ("alice", "v1", image.digest, "127.0.0.1")
    ]
    pulls = _events(server, "--action", "pull", "--repository", name)
    assert [(e["actor"], e["reference"], e["detail"]) for e in pulls] == [("alice", "v1", image.digest)]
    deletes = _events(server, "--action", "delete", "--repository", name)
    assert [(e["actor"], e["reference"]) for e in deletes] == [("alice", "v1")]
    failed = _events(server, "--action", "login", "--outcome", "failed")
    assert [(e["actor"], e["client"]) for e in failed] == [("alice", "127.0.0.1")]
    refused = _events(server, "--action", "denied", "--repository", other)
    assert refused and refused[0]["actor"] == "alice" and refused[0]["outcome"] == "denied"
    grants = _events(server, "--action", "token", "--actor", "alice", want=3)
    assert {e["outcome"] for e in grants} == {"ok", "denied"}  # the request for admin/... got nothing
    newest_first = _events(server, "--actor", "alice", want=6)
    assert [e["id"] for e in newest_first] == sorted((e["id"] for e in newest_first), reverse=True)
    page = _events(server, "--actor", "alice", "--before-id", str(newest_first[1]["id"]), "--limit", "1")
    assert [e["id"] for e in page] == [newest_first[2]["id"]]
    human = _cli(server, "audit", "--repository", name, "--since", "1h")
    assert "push" in human and "pull" in human and "alice" in human


def test_repeated_failed_logins_get_429_with_retry_after(server: RegistryServer):
    for _ in range(10):
        assert _token(server, "alice", "guess", []).status_code == 401
    r = _token(server, "alice", "guess", [])
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    # while locked out, even the right password waits: the lockout must not confirm a guess
    assert _token(server, "alice", "alice-pw-123", []).status_code == 429
    r = httpx.post(f"{server.url}/token", data={"grant_type": "password", "username": "alice",
                                                "password": "alice-pw-123", "service": "dockyard"})
    assert r.status_code == 429
    # anonymous pulls need no login and are not throttled
    assert _token(server, None, None, []).status_code == 200
    locked = _events(server, "--action", "login", "--outcome", "denied")
    assert locked and locked[0]["detail"] == "too many failed logins"


def test_audit_json_api_for_site_admins(server: RegistryServer):
    name = f"alice/{repo('api')}"
    token = _token(server, "alice", "alice-pw-123", [f"repository:{name}:pull,push"]).json()["token"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as c:
        push_image(c, name, "v1")
        push_image(c, name, "v2")
    _events(server, "--action", "push", "--repository", name, want=2)
    url = f"{server.url}/api/v1/audit"
    r = httpx.get(url, params={"repository": name, "action": "push", "limit": 1}, auth=("admin", ADMIN_PASSWORD))
    assert r.status_code == 200, r.text
    page = r.json()
    assert [e["reference"] for e in page["events"]] == ["v2"] and page["events"][0]["actor"] == "alice"
    r = httpx.get(url, params={"repository": name, "action": "push", "before_id": page["next_before_id"]},
                  auth=("admin", ADMIN_PASSWORD))
    assert [e["reference"] for e in r.json()["events"]] == ["v1"]
    assert httpx.get(url, auth=("alice", "alice-pw-123")).status_code == 403
    assert httpx.get(url).status_code == 401
    for bad in ({"limit": "0"}, {"limit": "x"}, {"action": "dance"}, {"since": "nan"}):
        assert httpx.get(url, params=bad, auth=("admin", ADMIN_PASSWORD)).status_code == 400, bad
