"""Docker token authentication against a real ``dockyard serve --auth token`` process.

Users and permissions are set up with the ``dockyard`` admin commands, the way an operator
would; tokens are fetched the way docker and podman fetch them (GET with basic credentials,
or the OAuth2 POST with password and refresh-token grants).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.oci import assert_error, digest, push_image, repo
from tests.server import RegistryServer

ADMIN_PASSWORD = "admin-secret-123"


class AuthRegistry:
    def __init__(self, server: RegistryServer) -> None:
        self.server = server
        self.url = server.url

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "dockyard", *args, "--data-dir", str(self.server.data_dir)],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, (args, out.stdout, out.stderr)
        return out.stdout

    def token(self, scopes: list[str], user: str | None = None, password: str | None = None) -> str:
        auth = (user, password) if user else None
        r = httpx.get(f"{self.url}/token", params={"service": "dockyard", "scope": scopes}, auth=auth)
        assert r.status_code == 200, r.text
        return r.json()["token"]

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKYARD_AUTH", "token")
        mp.setenv("DOCKYARD_ADMIN_PASSWORD", ADMIN_PASSWORD)
        server = RegistryServer(tmp_path_factory.mktemp("auth") / "data").start()
    registry = AuthRegistry(server)
    registry.cli("user", "add", "alice", "--password", "alice-pw-123")
    registry.cli("user", "add", "bob", "--password", "bob-pw-123")
    yield registry
    server.stop()


def _scope(name: str, actions: str) -> str:
    return f"repository:{name}:{actions}"


def _granted(token: str) -> list[dict]:
    return jwt.decode(token, options={"verify_signature": False})["access"]


def test_v2_challenges_without_a_token(auth_registry: AuthRegistry):
    r = httpx.get(f"{auth_registry.url}/v2/")
    assert_error(r, 401, "UNAUTHORIZED")
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'realm="{auth_registry.url}/token"' in challenge and 'service="dockyard"' in challenge


def test_login_like_docker(auth_registry: AuthRegistry):
    token = auth_registry.token([], "alice", "alice-pw-123")
    with auth_registry.client(token) as c:
        assert c.get("/v2/").status_code == 200
    r = httpx.get(f"{auth_registry.url}/token", params={"service": "dockyard"}, auth=("alice", "wrong"))
    assert_error(r, 401, "UNAUTHORIZED")
    r = httpx.get(f"{auth_registry.url}/token", params={"service": "dockyard"}, auth=("nobody", "wrong"))
    assert_error(r, 401, "UNAUTHORIZED")


def test_owner_pushes_and_pulls_in_own_namespace(auth_registry: AuthRegistry):
    name = f"alice/{repo('app')}"
    token = auth_registry.token([_scope(name, "pull,push")], "alice", "alice-pw-123")
    assert {tuple(sorted(a["actions"])) for a in _granted(token)} == {("pull", "push")}
    with auth_registry.client(token) as c:
        push_image(c, name, "v1")
        assert c.get(f"/v2/{name}/manifests/v1").status_code == 200


def test_private_repository_is_indistinguishable_from_a_missing_one(auth_registry: AuthRegistry):
    name = f"alice/{repo('private')}"
    token = auth_registry.token([_scope(name, "pull,push")], "alice", "alice-pw-123")
    with auth_registry.client(token) as c:
        push_image(c, name, "v1")
    missing = f"alice/{repo('missing')}"
    answers = []
    for target in (name, missing):
        for who in (None, ("bob", "bob-pw-123")):
            token = auth_registry.token([_scope(target, "pull")], *(who or (None, None)))
            assert _granted(token) == []  # a partial grant, never a 401 from /token
            with auth_registry.client(token) as c:
                r = c.get(f"/v2/{target}/manifests/v1")
                answers.append((r.status_code, r.json()["errors"][0]["code"], r.headers["WWW-Authenticate"]
                                .replace(target, "NAME")))
    assert len(set(answers)) == 1 and answers[0][0] == 401


def test_public_repository_is_pullable_by_anyone_but_not_pushable(auth_registry: AuthRegistry):
    name = f"alice/{repo('public')}"
    token = auth_registry.token([_scope(name, "pull,push")], "alice", "alice-pw-123")
    with auth_registry.client(token) as c:
        push_image(c, name, "v1")
    auth_registry.cli("repo", "visibility", name, "public")
    anonymous = auth_registry.token([_scope(name, "pull,push")])
    assert [a["actions"] for a in _granted(anonymous)] == [["pull"]]
    with auth_registry.client(anonymous) as c:
        assert c.get(f"/v2/{name}/manifests/v1").status_code == 200
        assert_error(c.post(f"/v2/{name}/blobs/uploads/"), 401, "UNAUTHORIZED")
        assert "insufficient_scope" in c.post(f"/v2/{name}/blobs/uploads/").headers["WWW-Authenticate"]


def test_team_grant_gives_exactly_its_level(auth_registry: AuthRegistry):
    auth_registry.cli("org", "create", "acme")
    auth_registry.cli("team", "create", "acme", "readers")
    auth_registry.cli("team", "add-member", "acme", "readers", "bob")
    auth_registry.cli("team", "grant", "acme", "readers", "read", "--namespace", "acme")
    name = f"acme/{repo('svc')}"
    admin = auth_registry.token([_scope(name, "pull,push")], "admin", ADMIN_PASSWORD)
    with auth_registry.client(admin) as c:
        push_image(c, name, "v1")
    bob = auth_registry.token([_scope(name, "pull,push,delete")], "bob", "bob-pw-123")
    assert [a["actions"] for a in _granted(bob)] == [["pull"]]
    with auth_registry.client(bob) as c:
        assert c.get(f"/v2/{name}/manifests/v1").status_code == 200
        assert_error(c.delete(f"/v2/{name}/manifests/v1"), 401, "UNAUTHORIZED")
    alice = auth_registry.token([_scope(name, "pull")], "alice", "alice-pw-123")
    assert _granted(alice) == []


def test_catalog_lists_only_readable_repositories(auth_registry: AuthRegistry):
    mine = f"alice/{repo('cat')}"
    token = auth_registry.token([_scope(mine, "pull,push")], "alice", "alice-pw-123")
    with auth_registry.client(token) as c:
        push_image(c, mine, "v1")
    for who, password, visible in (("alice", "alice-pw-123", True), ("bob", "bob-pw-123", False)):
        token = auth_registry.token(["registry:catalog:*"], who, password)
        with auth_registry.client(token) as c:
            names = c.get("/v2/_catalog", params={"n": 10000}).json()["repositories"]
        assert (mine in names) is visible


def test_mount_from_an_unreadable_repository_falls_back_to_upload(auth_registry: AuthRegistry):
    source = f"alice/{repo('src')}"
    alice = auth_registry.token([_scope(source, "pull,push")], "alice", "alice-pw-123")
    with auth_registry.client(alice) as c:
        image = push_image(c, source, "v1")
    layer = image.layers[0]
    target = f"bob/{repo('dst')}"
    bob = auth_registry.token([_scope(target, "pull,push"), _scope(source, "pull")], "bob", "bob-pw-123")
    with auth_registry.client(bob) as c:
        r = c.post(f"/v2/{target}/blobs/uploads/", params={"mount": digest(layer), "from": source})
        assert r.status_code == 202, r.text
        r = c.post(f"/v2/{target}/blobs/uploads/", params={"mount": digest(layer)})
        assert r.status_code == 202, r.text
    alice_target = f"alice/{repo('dst')}"
    alice = auth_registry.token([_scope(alice_target, "pull,push"), _scope(source, "pull")], "alice", "alice-pw-123")
    with auth_registry.client(alice) as c:
        r = c.post(f"/v2/{alice_target}/blobs/uploads/", params={"mount": digest(layer), "from": source})
        assert r.status_code == 201, r.text


# -- token integrity ------------------------------------------------------------------------------


def _signed(payload: dict, key: ec.EllipticCurvePrivateKey) -> str:
    return jwt.encode(payload, key, algorithm="ES256")


def _server_key(registry: AuthRegistry) -> ec.EllipticCurvePrivateKey:
    pem = (Path(registry.server.data_dir) / "auth" / "token.key").read_bytes()
    return serialization.load_pem_private_key(pem, password=None)  # type: ignore[return-value]


@pytest.mark.parametrize("case", ["expired", "tampered", "wrong-audience", "wrong-key", "garbage", "refresh-as-access"])
def test_bad_tokens_are_refused(auth_registry: AuthRegistry, case: str):
    name = f"alice/{repo('tok')}"
    good = auth_registry.token([_scope(name, "pull,push")], "alice", "alice-pw-123")
    claims = jwt.decode(good, options={"verify_signature": False})
    key = _server_key(auth_registry)
    now = int(time.time())
    if case == "expired":
        token = _signed({**claims, "iat": now - 4000, "nbf": now - 4000, "exp": now - 3000}, key)
    elif case == "tampered":
        head, body, sig = good.split(".")
        forged = jwt.encode({**claims, "sub": "admin"}, "k" * 32, algorithm="HS256").split(".")[1]
        token = ".".join([head, forged, sig])
    elif case == "wrong-audience":
        token = _signed({**claims, "aud": "someone-else"}, key)
    elif case == "wrong-key":
        token = _signed(claims, ec.generate_private_key(ec.SECP256R1()))
    elif case == "garbage":
        token = "not.a.jwt"
    else:
        r = httpx.post(f"{auth_registry.url}/token", data={
            "grant_type": "password", "username": "alice", "password": "alice-pw-123",
            "service": "dockyard", "scope": _scope(name, "pull"), "client_id": "test"})
        token = r.json()["refresh_token"]
    with auth_registry.client(token) as c:
        r = c.get(f"/v2/{name}/tags/list")
    assert_error(r, 401, "UNAUTHORIZED")
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


def test_oauth2_password_and_refresh_grants(auth_registry: AuthRegistry):
    name = f"alice/{repo('oauth')}"
    form = {"grant_type": "password", "username": "alice", "password": "alice-pw-123", "service": "dockyard",
            "scope": _scope(name, "pull,push"), "client_id": "podman", "access_type": "offline"}
    r = httpx.post(f"{auth_registry.url}/token", data=form)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["expires_in"] > 0 and body["refresh_token"]
    with auth_registry.client(body["access_token"]) as c:
        push_image(c, name, "v1")
    r = httpx.post(f"{auth_registry.url}/token", data={
        "grant_type": "refresh_token", "refresh_token": body["refresh_token"], "service": "dockyard",
        "scope": _scope(name, "pull"), "client_id": "podman"})
    assert r.status_code == 200, r.text
    with auth_registry.client(r.json()["access_token"]) as c:
        assert c.get(f"/v2/{name}/manifests/v1").status_code == 200
    bad = {**form, "password": "nope"}
    assert httpx.post(f"{auth_registry.url}/token", data=bad).status_code == 401
    assert httpx.post(f"{auth_registry.url}/token", data={"grant_type": "magic"}).status_code == 400
    r = httpx.post(f"{auth_registry.url}/token", data={"grant_type": "refresh_token", "refresh_token": "x.y.z"})
    assert r.status_code == 401


def test_malformed_and_huge_token_requests(auth_registry: AuthRegistry):
    url = f"{auth_registry.url}/token"
    assert httpx.get(url, headers={"Authorization": "Basic !!!notbase64"}).status_code == 400
    assert httpx.get(url, params={"service": "other"}).status_code == 400
    many = [_scope(f"alice/r{i}", "pull") for i in range(100)]
    assert httpx.get(url, params={"scope": many}).status_code == 400
    r = httpx.post(url, content=b"grant_type=password&" + b"x" * (256 * 1024),
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code in (400, 413)
    assert httpx.get(f"{auth_registry.url}/v2/").status_code == 401  # still serving


def test_head_links_a_blob_the_caller_can_read_elsewhere(auth_registry: AuthRegistry):
    """Access-aware deduplication: a push that shares layers with a readable repository sends
    nothing twice; a blob only in repositories the caller cannot read stays unknown."""
    shared = f"alice/{repo('base')}"
    alice = auth_registry.token([_scope(shared, "pull,push")], "alice", "alice-pw-123")
    with auth_registry.client(alice) as c:
        image = push_image(c, shared, "v1")
    layer = digest(image.layers[0])
    target = f"bob/{repo('app')}"
    bob = auth_registry.token([_scope(target, "pull,push")], "bob", "bob-pw-123")
    with auth_registry.client(bob) as c:
        assert_error(c.head(f"/v2/{target}/blobs/{layer}"), 404)  # private to alice: not linked
    auth_registry.cli("repo", "visibility", shared, "public")
    with auth_registry.client(bob) as c:
        r = c.head(f"/v2/{target}/blobs/{layer}")
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == layer
        assert c.get(f"/v2/{target}/blobs/{layer}").content == image.layers[0]
    read_only = f"bob/{repo('ro')}"
    reader = auth_registry.token([_scope(read_only, "pull")], "bob", "bob-pw-123")
    with auth_registry.client(reader) as c:  # a pull-only token links nothing
        assert_error(c.head(f"/v2/{read_only}/blobs/{layer}"), 404)
