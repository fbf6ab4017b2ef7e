"""The authorization matrix: every registry endpoint x every kind of caller x public/private.

Callers: anonymous; users holding read, write and delete through teams; the site admin; an
organization robot with a write grant; a read-only personal access token of the writer; and a
token issued from a personal access token that was revoked afterwards.

Each cell asserts the exact status. A caller without access gets 401 with a Bearer challenge
whether or not the repository exists, so the matrix also checks that private repositories do
not leak. Callers get their tokens the way clients do: asking /token for pull,push,delete and
receiving whatever subset they hold.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.backends import cli_env
from tests.oci import Image, digest, push_blob, push_image

pytestmark = pytest.mark.core

ADMIN_PASSWORD = "matrix-admin-pw"
CALLERS = ["anonymous", "reader", "writer", "deleter", "admin", "robot", "read-only token", "revoked token"]
PASSWORDS = {"reader": "reader-pw-1", "writer": "writer-pw-1", "deleter": "deleter-pw-1", "admin": ADMIN_PASSWORD}
REPOS = {"public": "matrix/pub", "private": "matrix/priv", "missing": "matrix/none"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from tests.server import RegistryServer

    server = RegistryServer(
        tmp_path_factory.mktemp("matrix") / "data",
        env={"DOCKYARD_AUTH": "token", "DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD},
    ).start()

    def cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "dockyard", *args, "--data-dir", str(server.data_dir)],
                             capture_output=True, text=True, timeout=60, env=cli_env(server.data_dir))
        assert out.returncode == 0, (args, out.stderr)
        return out.stdout

    logins = {role: (role, password) for role, password in PASSWORDS.items()}
    cli("org", "create", "matrix")
    for role, level in (("reader", "read"), ("writer", "write"), ("deleter", "delete")):
        cli("user", "add", role, "--password", PASSWORDS[role])
        cli("team", "create", "matrix", f"{role}s")
        cli("team", "add-member", "matrix", f"{role}s", role)
        cli("team", "grant", "matrix", f"{role}s", level, "--namespace", "matrix")
    admin = _token({"server": server, "logins": logins}, "admin", [REPOS["public"], REPOS["private"]])
    images = {}
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin}"}) as c:
        for kind in ("public", "private"):
            images[kind] = push_image(c, REPOS[kind], "v1")
    cli("repo", "visibility", REPOS["public"], "public")
    robot_name, robot_secret = cli("robot", "create", "matrix", "ci").split()[:2]
    cli("robot", "grant", "matrix", "ci", "write", "--namespace", "matrix")
    logins["robot"] = (robot_name, robot_secret)
    logins["read-only token"] = ("writer", cli("token", "create", "writer", "ro", "--scope", "read").strip())
    logins["revoked token"] = ("writer", cli("token", "create", "writer", "gone", "--scope", "admin").strip())
    world = {"server": server, "images": images, "cli": cli, "logins": logins}
    # Tokens taken while the credential was good, used after it is revoked: they must stop working.
    world["revoked"] = {
        tuple(repos): _token(world, "revoked token", repos, fresh=True)
        for repos in ([REPOS["public"]], [REPOS["private"]], [REPOS["missing"]], [])
    }
    cli("token", "revoke", "writer", "gone")
    time.sleep(2.5)  # revocation is noticed within the credential check's 2 s cache
    yield world
    server.stop()


def _token(world: dict, caller: str, repos: list[str], fresh: bool = False) -> str:
    if caller == "revoked token" and not fresh:
        return world["revoked"][tuple(repos)]
    scopes = [f"repository:{r}:pull,push,delete" for r in repos] + ["registry:catalog:*"]
    auth = None if caller == "anonymous" else world["logins"][caller]
    r = httpx.get(f"{world['server'].url}/token", params={"service": "dockyard", "scope": scopes}, auth=auth)
    assert r.status_code == 200, r.text
    return r.json()["token"]


# op: (the permission it needs, the status on success, the request). ``image`` is the image
# already in the repository under test; delete cells first get a fresh target from the admin.
Op = Callable[[httpx.Client, dict, str, Image], httpx.Response]
OPS: dict[str, tuple[str, int, Op]] = {
    "manifest GET": ("pull", 200, lambda c, w, n, i: c.get(f"/v2/{n}/manifests/v1")),
    "manifest HEAD": ("pull", 200, lambda c, w, n, i: c.head(f"/v2/{n}/manifests/v1")),
    "blob GET": ("pull", 200, lambda c, w, n, i: c.get(f"/v2/{n}/blobs/{digest(i.config)}")),
    "blob HEAD": ("pull", 200, lambda c, w, n, i: c.head(f"/v2/{n}/blobs/{digest(i.config)}")),
    "tags list": ("pull", 200, lambda c, w, n, i: c.get(f"/v2/{n}/tags/list")),
    "referrers": ("pull", 200, lambda c, w, n, i: c.get(f"/v2/{n}/referrers/{i.digest}")),
    "upload POST": ("push", 202, lambda c, w, n, i: c.post(f"/v2/{n}/blobs/uploads/")),
    "blob monolithic": ("push", 201, lambda c, w, n, i: c.post(
        f"/v2/{n}/blobs/uploads/", params={"digest": digest(b"matrix")}, content=b"matrix")),
    "manifest PUT": ("push", 201, lambda c, w, n, i: c.put(
        f"/v2/{n}/manifests/pushed", content=i.content, headers={"Content-Type": i.media_type})),
    "tag DELETE": ("delete", 202, lambda c, w, n, i: c.delete(f"/v2/{n}/manifests/{_fresh_tag(w, n, i)}")),
    "blob DELETE": ("delete", 202, lambda c, w, n, i: c.delete(f"/v2/{n}/blobs/{_fresh_blob(w, n)}")),
}
LEVEL = {"anonymous": 0, "reader": 1, "writer": 2, "deleter": 3, "admin": 4, "robot": 2, "read-only token": 1,
         "revoked token": None}
NEEDS = {"pull": 1, "push": 2, "delete": 3}


def _admin(world: dict, name: str) -> httpx.Client:
    token = _token(world, "admin", [name])
    return httpx.Client(base_url=world["server"].url, headers={"Authorization": f"Bearer {token}"})


def _fresh_tag(world: dict, name: str, image: Image) -> str:
    """A tag that exists, so that a 401 is about permission and not about the object."""
    world["serial"] = world.get("serial", 0) + 1
    tag = f"del-{world['serial']}"
    with _admin(world, name) as c:
        r = c.put(f"/v2/{name}/manifests/{tag}", content=image.content, headers={"Content-Type": image.media_type})
        assert r.status_code == 201, r.text
    return tag


def _fresh_blob(world: dict, name: str) -> str:
    world["serial"] = world.get("serial", 0) + 1
    with _admin(world, name) as c:
        return push_blob(c, name, f"delete me {world['serial']}".encode())


def expected(caller: str, visibility: str, op: str) -> int:
    need, success, _ = OPS[op]
    if LEVEL[caller] is None:  # a revoked credential's token is refused outright, public or not
        return 401
    level = max(LEVEL[caller], 1) if visibility == "public" else LEVEL[caller]
    return success if level >= NEEDS[need] else 401


@pytest.mark.parametrize("visibility", ["public", "private"])
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("op", list(OPS))
def test_matrix(world: dict, caller: str, visibility: str, op: str):
    name = REPOS[visibility]
    token = _token(world, caller, [name])
    with httpx.Client(base_url=world["server"].url, headers={"Authorization": f"Bearer {token}"}) as c:
        r = OPS[op][2](c, world, name, world["images"][visibility])
    want = expected(caller, visibility, op)
    assert r.status_code == want, (caller, visibility, op, r.status_code, r.text[:300])
    if want == 401:
        assert r.headers["WWW-Authenticate"].startswith("Bearer ")
        if r.request.method != "HEAD":
            assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"


@pytest.mark.parametrize("caller", CALLERS)
def test_missing_repository_answers_like_a_private_one(world: dict, caller: str):
    """For a caller without access, a private repository and a missing one are indistinguishable."""
    answers = []
    for name in (REPOS["private"], REPOS["missing"]):
        token = _token(world, caller, [name])
        with httpx.Client(base_url=world["server"].url, headers={"Authorization": f"Bearer {token}"}) as c:
            r = c.get(f"/v2/{name}/manifests/v1")
        answers.append((r.status_code, r.headers.get("WWW-Authenticate", "").replace(name, "NAME")))
    if not LEVEL[caller]:
        assert answers[0] == answers[1] and answers[0][0] == 401
    else:
        assert answers[0][0] == 200


@pytest.mark.parametrize("caller", CALLERS)
def test_catalog_shows_exactly_the_readable_repositories(world: dict, caller: str):
    token = _token(world, caller, [])
    with httpx.Client(base_url=world["server"].url, headers={"Authorization": f"Bearer {token}"}) as c:
        r = c.get("/v2/_catalog")
    if LEVEL[caller] is None:
        assert r.status_code == 401
        return
    assert r.status_code == 200
    names = set(r.json()["repositories"])
    assert REPOS["public"] in names
    assert (REPOS["private"] in names) is (LEVEL[caller] >= 1)
