"""Retention policies, tag immutability and storage quotas, against a real ``dockyard serve``.

Images travel with skopeo (OCI layouts made in Python, pushed with ``skopeo copy``) where the
client's behaviour matters (refusals must reach the user with the registry's message, a refused
blob must leave nothing behind); small fixtures that only need to exist are pushed with httpx.
Rules are set through the admin API (token authentication) as the site admin, an organization
admin (``olga``, admin of ``acme``) or a plain user (``pat``); one test drives the CLI against an
open registry instead.

Pulls reach ``repository_manifests.last_pulled_at`` through the usage recorder's batched flush
(about a second); the retention test pulls with skopeo and waits for that row to change.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from dockyard.cli import main as dockyard_cli
from dockyard.meta import store
from dockyard.meta.db import Database
from dockyard.meta.tables import blobs, repositories, repository_manifests, uploads
from dockyard.registry import retention
from dockyard.registry.enforcement import PolicyHooks
from dockyard.registry.hooks import AllHooks
from dockyard.registry.policies import RetentionRules, set_policy
from dockyard.registry.units import format_duration, format_size, parse_duration, parse_size
from tests import oci
from tests.backends import backend_env, database_url
from tests.clients import require, run
from tests.images import Image, image_from_layers, random_image, random_layer, write_layout
from tests.oci import assert_error, assert_no_traceback, files_under, repo
from tests.server import RegistryServer

pytestmark = [pytest.mark.clients, pytest.mark.core]

ADMIN_PASSWORD = "policy-admin-123"
PASSWORDS = {"admin": ADMIN_PASSWORD, "olga": "olga-pw-123", "pat": "pat-pw-123"}
ORG = "acme"
DOCUMENT = json.loads((Path(__file__).parents[1] / "src/dockyard/api/openapi.json").read_text())
_SCHEMAS = Registry().with_resource("urn:openapi", Resource.from_contents(DOCUMENT, default_specification=DRAFT202012))
OCI_ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"


def conforms(body: Any, schema: str) -> Any:
    Draft202012Validator({"$ref": f"urn:openapi#/components/schemas/{schema}"}, registry=_SCHEMAS).validate(body)
    return body


class Env:
    """The server, its users' JWTs, skopeo with the site admin's credentials, and its database."""

    def __init__(self, server: RegistryServer, work: Path) -> None:
        self.server = server
        self.url = server.url
        self.host = server.host
        self.work = work
        self.db = Database(database_url(server.data_dir))
        self._jwts: dict[str, str] = {}
        self.skopeo_env = {
            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(work / "home"),
            "XDG_CONFIG_HOME": str(work / "home" / ".config"),
            "DOCKER_CONFIG": str(work / "home" / "docker"),
            "REGISTRY_AUTH_FILE": str(work / "home" / "auth.json"),
        }

    # -- the admin API ------------------------------------------------------------------------

    def call(self, who: str | None, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if who is not None:
            if who not in self._jwts:
                r = httpx.get(f"{self.url}/token", params={"service": "dockyard"}, auth=(who, PASSWORDS[who]))
                assert r.status_code == 200, r.text
                self._jwts[who] = r.json()["token"]
            headers["Authorization"] = f"Bearer {self._jwts[who]}"
        return httpx.request(method, f"{self.url}/api/v1{path}", headers=headers, timeout=120, **kw)

    def ok(self, method: str, path: str, status: int = 200, *, who: str = "admin", **kw: Any) -> httpx.Response:
        r = self.call(who, method, path, **kw)
        assert r.status_code == status, (method, path, r.status_code, r.text)
        return r

    def new_org(self) -> str:
        name = repo("ns")
        self.ok("POST", "/orgs", 201, json={"name": name})
        return name

    # -- the registry -------------------------------------------------------------------------

    def client(self, name: str) -> httpx.Client:
        """An httpx client holding the site admin's token for ``name``."""
        r = httpx.get(
            f"{self.url}/token",
            params={"service": "dockyard", "scope": f"repository:{name}:pull,push,delete"},
            auth=("admin", ADMIN_PASSWORD),
        )
        assert r.status_code == 200, r.text
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {r.json()['token']}"}, timeout=60)

    def skopeo(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(
            [require("skopeo"), "--insecure-policy", *args], env=self.skopeo_env, registry=self.server, check=check
        )

    def push(self, image: Image, name: str, tag: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        layout = write_layout(self.work / f"layout-{secrets.token_hex(6)}", tag, image)
        return self.skopeo(
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            f"admin:{ADMIN_PASSWORD}",
            f"oci:{layout}:{tag}",
            f"docker://{self.host}/{name}:{tag}",
            check=check,
        )

    def pull(self, name: str, reference: str) -> None:
        separator = "@" if reference.startswith("sha256:") else ":"
        self.skopeo(
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            f"admin:{ADMIN_PASSWORD}",
            f"docker://{self.host}/{name}{separator}{reference}",
            f"oci:{self.work / ('pulled-' + secrets.token_hex(6))}:x",
        )

    def digest_of(self, name: str, reference: str) -> str | None:
        with self.client(name) as c:
            r = c.get(f"/v2/{name}/manifests/{reference}", headers={"Accept": OCI_ACCEPT})
        return r.headers["Docker-Content-Digest"] if r.status_code == 200 else None

    def tags(self, name: str) -> list[str]:
        with self.client(name) as c:
            r = c.get(f"/v2/{name}/tags/list")
        assert r.status_code == 200, r.text
        return r.json()["tags"]

    def pulled_at(self, name: str, digest: str) -> float | None:
        def read(conn: sa.Connection) -> float | None:
            return conn.execute(
                sa.select(repository_manifests.c.last_pulled_at)
                .select_from(repository_manifests.join(repositories))
                .where(repositories.c.name == name, repository_manifests.c.digest == digest)
            ).scalar()

        return self.db.run_sync(read)

    def stored(self) -> tuple[int, list[Path], int, list[Path]]:
        """Blob rows, blob files, upload rows, upload files: what a refused push must not add to."""

        def count(conn: sa.Connection) -> tuple[int, int]:
            return (
                conn.execute(sa.select(sa.func.count()).select_from(blobs)).scalar_one(),
                conn.execute(sa.select(sa.func.count()).select_from(uploads)).scalar_one(),
            )

        blob_rows, upload_rows = self.db.run_sync(count)
        data = self.server.data_dir
        return blob_rows, files_under(data / "blobs"), upload_rows, files_under(data / "uploads")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    work = tmp_path_factory.mktemp("policies")
    server = RegistryServer(
        work / "data", env={"DOCKYARD_AUTH": "token", "DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD}
    ).start()
    e = Env(server, work)
    for name in ("olga", "pat"):
        e.ok("POST", "/users", 201, json={"name": name, "password": PASSWORDS[name]})
    e.ok("POST", "/orgs", 201, json={"name": ORG})
    e.ok("POST", f"/orgs/{ORG}/teams", 201, json={"name": "admins"})
    e.ok("PUT", f"/orgs/{ORG}/teams/admins/members/olga", 204)
    e.ok(
        "POST", "/grants", json={"subject_type": "team", "subject": f"{ORG}/admins", "level": "admin", "namespace": ORG}
    )
    yield e
    e.db.close()
    server.stop()
    assert_no_traceback(server.log())


@pytest.fixture
def rng() -> random.Random:
    seed = secrets.randbits(32)
    print(f"random seed {seed}")
    return random.Random(seed)


def small_image(rng: random.Random) -> Image:
    return random_image(rng, layers=1)


def push_blobs_then_manifest(client: httpx.Client, name: str, tag: str, image: oci.Image) -> httpx.Response:
    for blob in image.blobs:
        oci.push_blob(client, name, blob)
    return oci.put_manifest(client, name, tag, image.content, image.media_type)


# -- immutability ----------------------------------------------------------------------------


def test_an_immutable_tag_cannot_be_pushed_over_or_deleted(env: Env, rng: random.Random):
    name = f"{ORG}/{repo('imm')}"
    env.ok("PUT", "/policies/immutability", who="olga", params={"repository": name}, json={"patterns": ["v*"]})
    first, second = small_image(rng), small_image(rng)
    env.push(first, name, "v1")

    refused = env.push(second, name, "v1", check=False)
    assert refused.returncode != 0
    assert "tag 'v1' is immutable in repository" in refused.stderr and "(rule 'v*')" in refused.stderr, refused.stderr
    assert env.digest_of(name, "v1") == first.digest

    env.push(second, name, "latest")  # not matched by v*: moves freely
    env.push(first, name, "latest")
    assert env.digest_of(name, "latest") == first.digest
    env.push(first, name, "v1")  # the same manifest again is no change
    assert env.digest_of(name, "v1") == first.digest

    deleted = env.skopeo(
        "delete",
        "--tls-verify=false",
        "--creds",
        f"admin:{ADMIN_PASSWORD}",
        f"docker://{env.host}/{name}:v1",
        check=False,
    )
    assert deleted.returncode != 0 and "immutable" in deleted.stderr, deleted.stderr
    with env.client(name) as c:
        body = assert_error(c.delete(f"/v2/{name}/manifests/v1"), 403, "DENIED")
        assert "immutable" in body["errors"][0]["message"]
        assert_error(c.delete(f"/v2/{name}/manifests/{first.digest}"), 403, "DENIED")
    assert env.tags(name) == ["latest", "v1"]

    # Removing the rule counts at once: the API tells the server's rule cache.
    env.ok("DELETE", "/policies/immutability", 204, who="olga", params={"repository": name})
    env.push(second, name, "v1")
    assert env.digest_of(name, "v1") == second.digest


def test_namespace_and_repository_patterns_add_up(env: Env):
    namespace = env.new_org()
    name, other = f"{namespace}/app", f"{namespace}/other"
    env.ok("PUT", "/policies/immutability", params={"namespace": namespace}, json={"patterns": ["stable"]})
    env.ok("PUT", "/policies/immutability", params={"repository": name}, json={"patterns": ["v[0-9]*", "v[0-9]*"]})
    policies = env.ok("GET", "/policies", params={"repository": name}).json()["policies"]
    assert {
        (p["namespace"], p["repository"], tuple(p["rules"]["patterns"]))
        for p in conforms({"policies": policies}, "PolicyList")["policies"]
    } == {(namespace, None, ("stable",)), (None, name, ("v[0-9]*",))}
    for repository, locked, free in ((name, ["stable", "v2"], ["vx", "latest"]), (other, ["stable"], ["v2"])):
        with env.client(repository) as c:
            for tag in locked + free:
                oci.push_image(c, repository, tag)
            for tag in locked:
                r = push_blobs_then_manifest(c, repository, tag, oci.make_image())
                assert "immutable" in assert_error(r, 403, "DENIED")["errors"][0]["message"]
            for tag in free:
                assert push_blobs_then_manifest(c, repository, tag, oci.make_image()).status_code == 201


# -- retention -------------------------------------------------------------------------------


def _names(report: dict[str, Any]) -> tuple[set[str], set[str], dict[str, str]]:
    """Tags, manifest digests and skipped items (tag or digest -> reason) of a one-repository report."""
    (only,) = report["repositories"]
    skipped = {s.get("tag", s["digest"]): s["reason"] for s in only["skipped"]}
    return {t["tag"] for t in only["tags"]}, {m["digest"] for m in only["manifests"]}, skipped


def _wait_until_recorded(env: Env, name: str, digests: list[str], timeout: float = 30) -> None:
    """Pulls are written in batches (about every second): wait for these to be."""
    deadline = time.monotonic() + timeout
    while any(env.pulled_at(name, d) is None for d in digests):
        assert time.monotonic() < deadline, f"pulls of {digests} were not recorded in {timeout}s"
        time.sleep(0.2)


def test_retention_keeps_newest_patterns_pulled_and_immutable_and_unlinks_old_untagged(env: Env, rng: random.Random):
    name = f"{ORG}/{repo('ret')}"
    env.ok("PUT", "/policies/immutability", who="olga", params={"repository": name}, json={"patterns": ["v*"]})
    # Three pushes to one tag leave two untagged manifests behind; the middle one gets pulled.
    scratch = [small_image(rng) for _ in range(3)]
    for image in scratch:
        env.push(image, name, "scratch")
    images = {tag: small_image(rng) for tag in ("old-1", "release-1", "v1", "pulled-1", "new-1", "new-2")}
    for tag, image in images.items():
        env.push(image, name, tag)
    last_push = time.time()
    env.pull(name, "pulled-1")
    env.pull(name, scratch[1].digest)
    _wait_until_recorded(env, name, [images["pulled-1"].digest, scratch[1].digest])
    rules = {"keep_last": 2, "keep_tags": ["release-*"], "untagged_older_than": 1, "keep_pulled_within": 3600}
    policy = env.ok("PUT", "/policies/retention", who="olga", params={"repository": name}, json=rules).json()
    assert conforms(policy, "Policy")["rules"] == rules
    time.sleep(max(0.0, last_push + 1.5 - time.time()))  # every manifest is now older than the rule's 1 s

    everything = sorted([*images, "scratch"])
    assert env.tags(name) == everything
    dry = conforms(
        env.ok("POST", "/retention/run", who="olga", params={"repository": name, "dry_run": "true"}).json(),
        "RetentionReport",
    )
    assert dry["dry_run"] is True
    expected_tags = {"old-1", "scratch"}
    expected_manifests = {scratch[0].digest, scratch[2].digest, images["old-1"].digest}
    tags, manifests, skipped = _names(dry)
    assert (tags, manifests) == (expected_tags, expected_manifests)
    assert skipped == {"v1": "immutable (rule 'v*')"}
    assert env.tags(name) == everything  # a dry run changes nothing

    done = conforms(env.ok("POST", "/retention/run", who="olga", params={"repository": name}).json(), "RetentionReport")
    assert done["dry_run"] is False and (done["tags"], done["manifests"]) == (2, 3)
    assert _names(done) == (expected_tags, expected_manifests, {"v1": "immutable (rule 'v*')"})
    assert env.tags(name) == ["new-1", "new-2", "pulled-1", "release-1", "v1"]
    for digest in expected_manifests:
        assert env.digest_of(name, digest) is None
    assert env.digest_of(name, scratch[1].digest) == scratch[1].digest  # untagged but pulled: kept
    with env.client(name) as c:  # blobs are the garbage collector's: still served
        assert c.head(f"/v2/{name}/blobs/{images['old-1'].layers[0].digest}").status_code == 200

    again = env.ok("POST", "/retention/run", params={"repository": name}).json()
    assert (again["tags"], again["manifests"], again["skipped"]) == (0, 0, 1)
    events = env.ok("GET", "/audit", params={"actor": "retention", "repository": name}).json()["events"]
    assert sorted(e["reference"] for e in events) == sorted([*expected_tags, *expected_manifests])
    assert {e["action"] for e in events} == {"delete"}
    runs = conforms(env.ok("GET", "/retention/runs", params={"limit": "3"}).json(), "RetentionRunList")["runs"]
    assert [(r["dry_run"], r["trigger"]) for r in runs] == [(False, "api"), (False, "api"), (True, "api")]
    assert runs[1]["result"]["tags"] == 2 and runs[1]["finished_at"] is not None


def test_retention_keeps_index_children_and_referrers_of_what_survives(env: Env):
    namespace = env.new_org()
    name = f"{namespace}/multi"
    children = [oci.make_image(), oci.make_image(architecture="arm64")]
    with env.client(name) as c:
        for child in children:
            oci.push_image(c, name, None, child)  # by digest: untagged
        index = oci.make_index(children, platforms=[("linux", "amd64"), ("linux", "arm64")])
        index_digest = oci.push_manifest(c, name, "multi", index)
        signature = oci.make_artifact(
            "application/example.signature", subject=oci.descriptor(oci.OCI_INDEX, oci.encode(index))
        )
        oci.push_image(c, name, None, signature)
        orphan = oci.push_image(c, name)  # untagged, nothing refers to it
        oci.push_image(c, name, "newer")
    # A namespace policy governs the repository: the orphan goes, the index's family stays.
    env.ok(
        "PUT",
        "/policies/retention",
        params={"namespace": namespace},
        json={"keep_tags": ["multi", "newer"], "untagged_older_than": 0},
    )
    report = env.ok("POST", "/retention/run", params={"namespace": namespace}).json()
    assert _names(report) == (set(), {orphan.digest}, {})
    assert report["repositories"][0]["policy"] == f"{namespace}/*"

    # The repository's own policy replaces the namespace's: only the newest tag is kept, so the
    # index goes and takes its children and its signature with it.
    env.ok("PUT", "/policies/retention", params={"repository": name}, json={"keep_last": 1, "untagged_older_than": 0})
    report = env.ok("POST", "/retention/run", params={"namespace": namespace}).json()
    gone = {index_digest, signature.digest, *(child.digest for child in children)}
    assert _names(report) == ({"multi"}, gone, {})
    assert env.tags(name) == ["newer"]


def test_applying_a_plan_checks_each_item_again(env: Env):
    """A tag pushed again between planning and deleting (a new digest, or the same digest with a
    newer push time) is not deleted: the deleting transaction plans the repository again."""
    name = f"{ORG}/{repo('race')}"
    with env.client(name) as c:
        for tag in ("a", "b", "c"):
            oci.push_image(c, name, tag)
    env.ok("PUT", "/policies/retention", params={"repository": name}, json={"keep_last": 1})
    plan = asyncio.run(_plan(env.server.data_dir, name))
    assert {t.tag for t in plan.repositories[0].tags} == {"a", "b"}
    with env.client(name) as c:
        oci.push_image(c, name, "a")  # another manifest
        b = env.digest_of(name, "b")
        r = c.get(f"/v2/{name}/manifests/b", headers={"Accept": OCI_ACCEPT})
        assert oci.put_manifest(c, name, "b", r.content, r.headers["Content-Type"]).status_code == 201  # same one
    done = asyncio.run(_apply(env.server.data_dir, plan))
    assert done.repositories[0].tags == []
    assert {s["tag"]: s["reason"] for s in done.repositories[0].skipped} == {
        "a": "kept: changed since planned",
        "b": "kept: changed since planned",
    }
    assert env.tags(name) == ["a", "b", "c"] and env.digest_of(name, "b") == b


async def _plan(data_dir: Path, name: str) -> retention.Plan:
    db = Database(database_url(data_dir))
    try:
        return await db.read(retention.plan_retention, time.time(), None, name)
    finally:
        db.close()


async def _apply(data_dir: Path, plan: retention.Plan) -> retention.Plan:
    db = Database(database_url(data_dir))
    try:
        return await retention.apply_plan(db, AllHooks([PolicyHooks()]), plan)
    finally:
        db.close()


# -- quotas ----------------------------------------------------------------------------------


def _image_bytes(image: Image) -> int:
    return image.manifest.size + sum(b.size for b in image.blobs)


def test_quota_refuses_a_push_past_it_leaves_nothing_and_counts_shared_layers_once(env: Env, rng: random.Random):
    namespace = env.new_org()
    layers = [random_layer(rng, sizes=[150_000]) for _ in range(2)]  # random bytes: gzip keeps their size
    first = image_from_layers(layers)
    limit = _image_bytes(first) + 40_000
    quota = env.ok("PUT", f"/quotas/{namespace}", json={"limit_bytes": limit}).json()
    assert conforms(quota, "Quota") == {
        "namespace": namespace,
        "limit_bytes": limit,
        "used_bytes": 0,
        "headroom_bytes": limit,
        "updated_at": quota["updated_at"],
    }
    env.push(first, f"{namespace}/one", "v1")
    used = env.ok("GET", f"/quotas/{namespace}").json()
    assert (used["used_bytes"], used["headroom_bytes"]) == (_image_bytes(first), 40_000)

    # One layer bigger than the headroom: refused when its upload commits, and nothing of it stays.
    before = env.stored()
    too_big = image_from_layers([random_layer(rng, sizes=[60_000])])
    refused = env.push(too_big, f"{namespace}/two", "v1", check=False)
    assert refused.returncode != 0
    assert f"storage quota of namespace '{namespace}' exceeded" in refused.stderr, refused.stderr
    assert env.stored() == before and before[2:] == (0, [])
    assert env.digest_of(f"{namespace}/two", "v1") is None
    assert env.ok("GET", f"/quotas/{namespace}").json()["used_bytes"] == _image_bytes(first)

    # The same layers in a third repository (a new config and manifest): they count once, so it fits.
    third = image_from_layers(layers, cmd=["/bin/true"])
    env.push(third, f"{namespace}/three", "v1")
    expected = _image_bytes(first) + third.config.size + third.manifest.size
    status = env.ok("GET", f"/quotas/{namespace}", who="admin").json()
    assert (status["used_bytes"], status["headroom_bytes"]) == (expected, limit - expected)
    listed = conforms(env.ok("GET", "/quotas").json(), "QuotaList")["quotas"]
    assert {
        "namespace": namespace,
        "limit_bytes": limit,
        "used_bytes": expected,
        "headroom_bytes": limit - expected,
        "updated_at": quota["updated_at"],
    } in listed

    # With no headroom left, what the namespace already holds still moves freely between its
    # repositories (mounts, the same manifest), and any new byte is refused.
    env.ok("PUT", f"/quotas/{namespace}", json={"limit_bytes": expected})
    four = f"{namespace}/four"
    scope = {"service": "dockyard", "scope": [f"repository:{four}:pull,push", f"repository:{namespace}/three:pull"]}
    r = httpx.get(f"{env.url}/token", params=scope, auth=("admin", ADMIN_PASSWORD))
    token = f"Bearer {r.json()['token']}"
    with httpx.Client(base_url=env.url, headers={"Authorization": token}, timeout=60) as c:
        for blob in third.blobs:
            r = c.post(f"/v2/{four}/blobs/uploads/", params={"mount": blob.digest, "from": f"{namespace}/three"})
            assert r.status_code == 201, r.text
        r = c.put(
            f"/v2/{four}/manifests/v1", content=third.manifest.data, headers={"Content-Type": third.manifest.media_type}
        )
        assert r.status_code == 201, r.text
        r = c.post(
            f"/v2/{four}/blobs/uploads/",
            params={"digest": oci.digest(b"one more byte")},
            content=b"one more byte",
            headers={"Content-Type": "application/octet-stream"},
        )
        assert "exceeded" in assert_error(r, 403, "DENIED")["errors"][0]["message"]
    assert env.ok("GET", f"/quotas/{namespace}").json()["headroom_bytes"] == 0
    env.ok("DELETE", f"/quotas/{namespace}", 204)
    assert env.ok("GET", f"/quotas/{namespace}").json()["limit_bytes"] is None


def test_a_namespace_is_charged_for_layers_held_elsewhere_once_it_uses_them_and_not_after(env: Env, rng: random.Random):
    """Bytes another namespace references count here only while a manifest here references them:
    mounting them is free, the manifest that uses them is checked, and deleting it frees them."""
    ours, theirs = env.new_org(), env.new_org()
    layer = random_layer(rng, sizes=[150_000])
    big = layer[0]
    env.push(image_from_layers([layer]), f"{theirs}/base", "v1")
    image = image_from_layers([layer], cmd=["/bin/true"])
    name = f"{ours}/app"
    env.ok("PUT", f"/quotas/{ours}", json={"limit_bytes": 50_000})
    scope = {"service": "dockyard", "scope": [f"repository:{name}:pull,push,delete", f"repository:{theirs}/base:pull"]}
    token = httpx.get(f"{env.url}/token", params=scope, auth=("admin", ADMIN_PASSWORD)).json()["token"]
    with httpx.Client(base_url=env.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        r = c.post(f"/v2/{name}/blobs/uploads/", params={"mount": big.digest, "from": f"{theirs}/base"})
        assert r.status_code == 201, r.text  # linked, but only the other namespace uses it so far
        oci.push_blob(c, name, image.config.data)
        used = env.ok("GET", f"/quotas/{ours}").json()["used_bytes"]
        assert used == image.config.size  # an uploaded config nothing references yet counts
        put = {"content": image.manifest.data, "headers": {"Content-Type": image.manifest.media_type}}
        refused = c.put(f"/v2/{name}/manifests/v1", **put)
        assert "exceeded" in assert_error(refused, 403, "DENIED")["errors"][0]["message"]
        assert env.digest_of(name, "v1") is None
        assert env.ok("GET", f"/quotas/{ours}").json()["used_bytes"] == used  # nothing of it stayed
        env.ok("PUT", f"/quotas/{ours}", json={"limit_bytes": 500_000})
        assert c.put(f"/v2/{name}/manifests/v1", **put).status_code == 201
        charged = env.ok("GET", f"/quotas/{ours}").json()["used_bytes"]
        assert charged == big.size + image.config.size + image.manifest.size
        assert c.delete(f"/v2/{name}/manifests/{image.manifest.digest}").status_code == 202
    # The layer is still linked here and stored for the other namespace: no longer charged here.
    # The config waits for garbage collection, unreferenced, and stays charged until then.
    assert env.ok("GET", f"/quotas/{ours}").json()["used_bytes"] == image.config.size


# -- the admin API: permissions and bad input -------------------------------------------------


def test_policy_permissions_follow_who_administers_the_target(env: Env):
    name = f"{ORG}/{repo('perm')}"
    rules = {"keep_last": 3}
    for who, params in (("olga", {"namespace": ORG}), ("olga", {"repository": name}), ("admin", {"repository": name})):
        env.ok("PUT", "/policies/retention", who=who, params=params, json=rules)
        assert env.ok("GET", "/policies/retention", who=who, params=params).json()["rules"]["keep_last"] == 3
    for method in ("GET", "PUT", "DELETE"):
        for params in ({"namespace": ORG}, {"repository": name}):
            assert_error(env.call("pat", method, "/policies/retention", params=params, json=rules), 403, "DENIED")
    assert_error(env.call(None, "GET", "/policies"), 401, "UNAUTHORIZED")
    assert env.ok("GET", "/policies", who="pat").json() == {"policies": []}
    mine = env.ok("GET", "/policies", who="olga", params={"kind": "retention", "namespace": ORG}).json()["policies"]
    assert {(p["namespace"], p["repository"]) for p in mine} >= {(ORG, None), (None, name)}
    # Retention runs: target admins on their targets, site admins on everything.
    assert env.ok("POST", "/retention/run", who="olga", params={"namespace": ORG, "dry_run": "true"}).json()["dry_run"]
    assert_error(env.call("olga", "POST", "/retention/run", params={"dry_run": "true"}), 403, "DENIED")
    assert_error(env.call("pat", "POST", "/retention/run", params={"repository": name}), 403, "DENIED")
    assert_error(env.call("olga", "GET", "/retention/runs"), 403, "DENIED")
    env.ok("DELETE", "/policies/retention", 204, who="olga", params={"repository": name})
    env.ok("DELETE", "/policies/retention", 204, who="olga", params={"namespace": ORG})
    assert_error(env.call("olga", "DELETE", "/policies/retention", params={"namespace": ORG}), 404, "NOT_FOUND")
    assert_error(env.call("olga", "GET", "/policies/retention", params={"namespace": ORG}), 404, "NOT_FOUND")


def test_quotas_are_set_by_site_admins_and_read_by_namespace_admins(env: Env):
    assert_error(env.call("olga", "PUT", f"/quotas/{ORG}", json={"limit_bytes": 10**9}), 403, "DENIED")
    env.ok("PUT", f"/quotas/{ORG}", json={"limit_bytes": 10**12})
    assert env.ok("GET", f"/quotas/{ORG}", who="olga").json()["limit_bytes"] == 10**12
    assert [q["namespace"] for q in env.ok("GET", "/quotas", who="olga").json()["quotas"]] == [ORG]
    assert env.ok("GET", "/quotas", who="pat").json() == {"quotas": []}
    assert_error(env.call("pat", "GET", f"/quotas/{ORG}"), 403, "DENIED")
    assert_error(env.call("olga", "DELETE", f"/quotas/{ORG}"), 403, "DENIED")
    env.ok("DELETE", f"/quotas/{ORG}", 204)
    assert_error(env.call("admin", "DELETE", f"/quotas/{ORG}"), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "field"),
    [
        ("PUT", "/policies/retention", {}, {"keep_last": 1}, None),
        ("PUT", "/policies/retention", {"namespace": ORG, "repository": f"{ORG}/x"}, {"keep_last": 1}, None),
        ("PUT", "/policies/retention", {"namespace": f"{ORG}/x"}, {"keep_last": 1}, "namespace"),
        ("PUT", "/policies/retention", {"repository": "Not/Valid"}, {"keep_last": 1}, "repository"),
        ("PUT", "/policies/retention", {"namespace": ORG}, {}, None),
        ("PUT", "/policies/retention", {"namespace": ORG}, {"keep_last": 0}, "keep_last"),
        ("PUT", "/policies/retention", {"namespace": ORG}, {"keep_last": True}, "keep_last"),
        ("PUT", "/policies/retention", {"namespace": ORG}, {"keep_last": "3"}, "keep_last"),
        ("PUT", "/policies/retention", {"namespace": ORG}, {"keep_last": 2.5}, "keep_last"),
        ("PUT", "/policies/retention", {"namespace": ORG}, {"untagged_older_than": -1}, "untagged_older_than"),
        ("PUT", "/policies/retention", {"namespace": ORG}, {"keep_pulled_within": 0}, "keep_pulled_within"),
        ("PUT", "/policies/retention", {"namespace": ORG}, {"keep_tags": "release-*"}, "keep_tags"),
        ("PUT", "/policies/retention", {"namespace": ORG}, {"keep_tags": ["a/b"]}, "keep_tags"),
        ("PUT", "/policies/retention", {"namespace": ORG}, {"keep_tags": [""]}, "keep_tags"),
        ("PUT", "/policies/retention", {"namespace": ORG}, {"keep_tags": [7]}, "keep_tags"),
        ("PUT", "/policies/retention", {"namespace": ORG}, {"patterns": ["v*"]}, "patterns"),
        ("PUT", "/policies/immutability", {"namespace": ORG}, {"patterns": []}, "patterns"),
        ("PUT", "/policies/immutability", {"namespace": ORG}, '{"patterns": ["\\ud800"]}', None),
        ("PUT", "/policies/immutability", {"namespace": ORG}, {"keep_last": 1}, "keep_last"),
        ("PUT", "/policies/immutability", {"namespace": ORG}, [], None),
        ("PUT", "/policies/immutability", {"namespace": ORG}, "not json", None),
        ("GET", "/policies", {"kind": "other"}, None, "kind"),
        ("GET", "/policies", {"namespace": ORG, "repository": f"{ORG}/x"}, None, None),
        ("POST", "/retention/run", {"dry_run": "yes"}, None, "dry_run"),
        ("GET", "/retention/runs", {"limit": "0"}, None, "limit"),
        ("GET", "/retention/runs", {"limit": "99999999999999999999"}, None, "limit"),
        ("PUT", f"/quotas/{ORG}", {}, {"limit_bytes": 0}, "limit_bytes"),
        ("PUT", f"/quotas/{ORG}", {}, {"limit_bytes": "1GB"}, "limit_bytes"),
        ("PUT", f"/quotas/{ORG}", {}, {"limit_bytes": 2**63}, "limit_bytes"),
        ("PUT", f"/quotas/{ORG}", {}, {}, "limit_bytes"),
        ("PUT", f"/quotas/{ORG}", {}, {"limit_bytes": 5, "extra": 1}, None),
        ("PUT", "/quotas/Not-Valid", {}, {"limit_bytes": 5}, "namespace"),
        ("GET", "/quotas/a..b", {}, None, "namespace"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    env: Env, method: str, path: str, params: dict, body: Any, field: str | None
):
    content = body.encode() if isinstance(body, str) else None
    kw: dict[str, Any] = {"content": content} if content is not None else {"json": body} if body is not None else {}
    r = env.call("admin", method, path, params=params, **kw)
    error = assert_error(r, 400, "BAD_REQUEST")["errors"][0]
    if field is not None:
        assert error["detail"] in ({"field": field}, {"fields": [field]}), error


# -- the command line ------------------------------------------------------------------------


def test_cli_sets_rules_runs_retention_and_shows_quotas_of_an_open_registry(tmp_path: Path):
    data = tmp_path / "data"
    runner = CliRunner()

    def cli(*args: str, ok: bool = True) -> str:
        result = runner.invoke(dockyard_cli, [*args, "--data-dir", str(data)], env=backend_env(data))
        assert (result.exit_code == 0) == ok, (args, result.output)
        return result.output

    # Set before the server starts: its rules cache loads at the first push, so nothing waits.
    cli("quota", "set", "team", "1MB")
    cli("immutable", "add", "--repository", "team/app", "v*")
    output = cli("retention", "set", "-r", "team/app", "--keep-last", "1", "--untagged-older-than", "0")
    assert output == "retention policy of team/app: keep the newest 1; unlink untagged manifests older than 0s\n"
    assert cli("quota", "show", "team") == "team\t0 B used\t1.0 MB\t1.0 MB free\n"
    server = RegistryServer(data).start()  # DOCKYARD_AUTH=none
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            for tag in ("v1", "a", "b"):
                oci.push_image(c, "team/app", tag)
            r = push_blobs_then_manifest(c, "team/app", "v1", oci.make_image())
            assert "immutable" in assert_error(r, 403, "DENIED")["errors"][0]["message"]
            dry = cli("retention", "run", "--dry-run")
            assert "team/app:a\twould delete\tnot among the newest 1" in dry
            assert "team/app:v1\tkept\timmutable (rule 'v*')" in dry
            assert c.get("/v2/team/app/tags/list").json()["tags"] == ["a", "b", "v1"]
            report = json.loads(cli("retention", "run", "--json", "--repository", "team/app"))
            assert (report["tags"], report["manifests"], report["skipped"]) == (1, 1, 1)
            assert c.get("/v2/team/app/tags/list").json()["tags"] == ["b", "v1"]
            assert "\tcli\tapplied\t1 tags, 1 manifests" in cli("retention", "runs").splitlines()[0]
            big = oci.make_image(layers=1, layer_size=1_100_000)
            r = c.post(
                "/v2/team/app/blobs/uploads/",
                params={"digest": oci.digest(big.layers[0])},
                content=big.layers[0],
                headers={"Content-Type": "application/octet-stream"},
            )
            assert (
                "storage quota of namespace 'team' exceeded" in assert_error(r, 403, "DENIED")["errors"][0]["message"]
            )
            assert files_under(data / "uploads") == []
    finally:
        server.stop()
    assert_no_traceback(server.log())
    shown = cli("quota", "show")
    assert shown.startswith("team\t") and "1.0 MB\t" in shown
    assert "is not a size" in cli("quota", "set", "team", "12 parsecs", ok=False)
    assert "exactly one" in cli("retention", "set", "--keep-last", "1", ok=False)
    assert "at least one" in cli("retention", "set", "-n", "team", ok=False)
    assert "no immutability pattern 'x*'" in cli("immutable", "remove", "-r", "team/app", "x*", ok=False)
    assert "no immutable tags" in cli("immutable", "remove", "-r", "team/app")
    cli("quota", "remove", "team")
    assert "has no quota" in cli("quota", "remove", "team", ok=False)
    assert cli("retention", "show") == "team/app\tkeep the newest 1; unlink untagged manifests older than 0s\n"


# -- the pieces without a server -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("500MB", 500_000_000), ("2GiB", 2 * 1024**3), ("1.5G", 1_500_000_000), ("1048576", 1 << 20), ("10 kb", 10_000)],
)
def test_sizes_people_write(text: str, size: int):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "-1MB", "0", "12 parsecs", "1e3", "9" * 30])
def test_sizes_that_are_not(text: str):
    with pytest.raises(ValueError):
        parse_size(text)


def test_durations_and_how_sizes_read():
    assert [parse_duration(t) for t in ("90s", "15m", "12h", "7d", "2w", "30")] == [90, 900, 43200, 604800, 1209600, 30]
    with pytest.raises(ValueError):
        parse_duration("soon")
    assert [format_duration(s) for s in (0, 59, 3600, 90061, 691200)] == ["0s", "59s", "1h", "1d 1h", "1w 1d"]
    assert [format_size(n) for n in (0, 999, 1000, 1_234_567, 2 * 1024**3)] == [
        "0 B",
        "999 B",
        "1.0 kB",
        "1.2 MB",
        "2.1 GB",
    ]


def test_the_scheduled_run_applies_the_policies_and_is_logged(db: Database):
    def setup(conn: sa.Connection) -> None:
        for i, tag in enumerate(("a", "b", "c")):
            content = json.dumps({"schemaVersion": 2, "n": i}).encode()
            record = {
                "digest": oci.digest(content),
                "media_type": oci.OCI_MANIFEST,
                "size": len(content),
                "content": content,
                "subject": None,
                "artifact_type": None,
                "annotations": None,
            }
            store.put_manifest(conn, "acme/app", record, [], [tag])
        set_policy(conn, "retention", None, "acme/app", RetentionRules(keep_last=1))

    db.run_sync(setup)
    report = asyncio.run(retention.run_scheduled_retention(db, AllHooks([PolicyHooks()])))
    assert (report["tags"], report["manifests"]) == (2, 0)
    assert db.run_sync(store.list_tags, "acme/app", None, None) == ["c"]
    (run_row,) = db.run_sync(retention.recent_runs)
    assert (run_row["trigger"], run_row["dry_run"], run_row["result"]["tags"]) == ("schedule", False, 2)
