"""Usage accounting against a real ``dockyard serve --auth token``: a registry with shared layers
is built over HTTP, pulled from, then ``GET /api/v1/usage`` and ``dockyard usage --json`` must
give the sums worked out by hand below.

The registry (sizes in bytes; configs and manifests are small JSON documents whose sizes are
taken from their bytes):

* ``a/x``: image x1 (tag v1) = config cx1 + layers BASE (5000), L1 (3000); image x2 (tag v2) =
  config cx2 + layers BASE, S (2000). Also an uploaded blob U (400) that no manifest references.
* ``a/y``: image y (tags latest, 1.0) = config cy + layers BASE, S, L2 (1000).
* ``b/z``: image z (tag v1) = config cz + layers BASE, L3 (700). Public.

So BASE is held by three repositories in two namespaces, S by two repositories of namespace a,
and everything else by one repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.backends import cli_env, sql
from tests.oci import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    assert_error,
    assert_no_traceback,
    descriptor,
    encode,
    push_blob,
    push_manifest,
)
from tests.server import RegistryServer

pytestmark = pytest.mark.core

ADMIN_PASSWORD = "usage-admin-123"
PAT_PASSWORD = "pat-pw-123"
PRICE_STORAGE = 1000.0  # per GB-month: large, so that a few kilobytes cost a visible amount
PRICE_EGRESS = 500.0
GB = 10**9
DOCUMENT = json.loads((Path(__file__).parents[1] / "src/dockyard/api/openapi.json").read_text())
_SCHEMAS = Registry().with_resource("urn:openapi", Resource.from_contents(DOCUMENT, default_specification=DRAFT202012))


def conforms(body: Any, schema: str) -> Any:
    Draft202012Validator({"$ref": f"urn:openapi#/components/schemas/{schema}"}, registry=_SCHEMAS).validate(body)
    return body


@dataclass
class Img:
    config: bytes
    layers: list[bytes]

    @property
    def manifest(self) -> bytes:
        return encode(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, self.config),
                "layers": [descriptor(OCI_LAYER, layer) for layer in self.layers],
            }
        )

    @property
    def digest(self) -> str:
        return descriptor(OCI_MANIFEST, self.manifest)["digest"]


def _config() -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "nonce": uuid.uuid4().hex}).encode()


class Built:
    """The registry above, built once for the module, and the traffic sent to it."""

    def __init__(self, server: RegistryServer) -> None:
        self.server = server
        self.BASE, self.L1, self.S, self.L2, self.L3, self.U = (
            os.urandom(n) for n in (5000, 3000, 2000, 1000, 700, 400)
        )
        self.x1 = Img(_config(), [self.BASE, self.L1])
        self.x2 = Img(_config(), [self.BASE, self.S])
        self.y = Img(_config(), [self.BASE, self.S, self.L2])
        self.z = Img(_config(), [self.BASE, self.L3])
        self.tokens: dict[str, str] = {}

    def token(self, user: str, password: str, *scopes: str) -> str:
        params = [("service", "dockyard"), *(("scope", s) for s in scopes)]
        r = httpx.get(f"{self.server.url}/token", params=params, auth=(user, password))
        assert r.status_code == 200, r.text
        return r.json()["token"]

    def registry_client(self) -> httpx.Client:
        scopes = [f"repository:{name}:pull,push" for name in ("a/x", "a/y", "b/z")]
        token = self.token("admin", ADMIN_PASSWORD, *scopes)
        return httpx.Client(base_url=self.server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def api(self, who: str, path: str, **kw: Any) -> httpx.Response:
        if who not in self.tokens:
            self.tokens[who] = self.token(who, {"admin": ADMIN_PASSWORD, "pat": PAT_PASSWORD}[who])
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return httpx.get(f"{self.server.url}/api/v1{path}", headers=headers, timeout=60, **kw)

    def push(self, c: httpx.Client, name: str, image: Img, *tags: str) -> None:
        for blob in (image.config, *image.layers):
            push_blob(c, name, blob)
        for tag in tags:
            push_manifest(c, name, tag, image.manifest, OCI_MANIFEST)

    def build(self) -> None:
        with self.registry_client() as c:
            self.push(c, "a/x", self.x1, "v1")
            self.push(c, "a/x", self.x2, "v2")
            push_blob(c, "a/x", self.U)
            self.push(c, "a/y", self.y, "latest", "1.0")
            self.push(c, "b/z", self.z, "v1")
            # Pulls: manifest GETs count, HEADs do not.
            for path in ("/v2/a/x/manifests/v1", "/v2/a/x/manifests/v1", "/v2/a/y/manifests/latest"):
                assert c.get(path, headers={"Accept": OCI_MANIFEST}).status_code == 200
            assert c.get(f"/v2/b/z/manifests/{self.z.digest}", headers={"Accept": OCI_MANIFEST}).status_code == 200
            assert c.head("/v2/a/y/manifests/1.0", headers={"Accept": OCI_MANIFEST}).status_code == 200
            # Bytes served: a whole blob, a range, and one HEAD (no body).
            l1 = descriptor(OCI_LAYER, self.L1)["digest"]
            assert c.get(f"/v2/a/x/blobs/{l1}").content == self.L1
            base = descriptor(OCI_LAYER, self.BASE)["digest"]
            r = c.get(f"/v2/a/x/blobs/{base}", headers={"Range": "bytes=0-99"})
            assert r.status_code == 206 and r.content == self.BASE[:100]
            l3 = descriptor(OCI_LAYER, self.L3)["digest"]
            assert c.get(f"/v2/b/z/blobs/{l3}").content == self.L3
            assert c.head(f"/v2/a/x/blobs/{l1}").status_code == 200
        r = httpx.post(
            f"{self.server.url}/api/v1/users",
            json={"name": "pat", "password": PAT_PASSWORD},
            auth=("admin", ADMIN_PASSWORD),
        )
        assert r.status_code == 201, r.text
        grant = {"subject_type": "user", "subject": "pat", "level": "read", "repository": "a/x"}
        assert httpx.post(f"{self.server.url}/api/v1/grants", json=grant, auth=("admin", ADMIN_PASSWORD)).is_success
        r = httpx.put(
            f"{self.server.url}/api/v1/repositories/b/z/visibility",
            json={"visibility": "public"},
            auth=("admin", ADMIN_PASSWORD),
        )
        assert r.status_code == 200, r.text
        r = httpx.put(
            f"{self.server.url}/api/v1/quotas/a", json={"limit_bytes": 1_000_000}, auth=("admin", ADMIN_PASSWORD)
        )
        assert r.status_code == 200, r.text

    def flushed(self) -> dict[str, Any]:
        """The admin's report once the pulls and bytes served have been flushed (about a second
        after the traffic; polled, with a deadline far beyond that)."""
        deadline = time.monotonic() + 60
        while True:
            report = self.api("admin", "/usage").json()
            repos = {r["name"]: r for r in report["repositories"]}
            if repos["a/x"]["pulls"] == 2 and repos["b/z"]["bytes_served"] == 700:
                return report
            assert time.monotonic() < deadline, report
            time.sleep(0.2)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    env = {
        "DOCKYARD_AUTH": "token",
        "DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "DOCKYARD_PRICE_STORAGE_GB_MONTH": str(PRICE_STORAGE),
        "DOCKYARD_PRICE_EGRESS_GB": str(PRICE_EGRESS),
    }
    server = RegistryServer(tmp_path_factory.mktemp("usage") / "data", env=env).start()
    b = Built(server)
    b.build()
    b.flushed()
    yield b
    server.stop()
    assert_no_traceback(server.log())


def cost(attributed: float, served: int) -> dict[str, float]:
    storage, egress = attributed / GB * PRICE_STORAGE, served / GB * PRICE_EGRESS
    return {"storage": storage, "egress": egress, "total": storage + egress}


def assert_cost(found: dict[str, float], attributed: float, served: int) -> None:
    expected = cost(attributed, served)
    for key in ("storage", "egress", "total"):
        assert found[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), (key, found, expected)


def expected(b: Built) -> dict[str, dict[str, Any]]:
    """Every figure, summed by hand from the sizes."""
    n = len
    BASE, L1, S, L2, L3 = n(b.BASE), n(b.L1), n(b.S), n(b.L2), n(b.L3)
    cx1, cx2, cy, cz = n(b.x1.config), n(b.x2.config), n(b.y.config), n(b.z.config)
    mx1, mx2, my, mz = n(b.x1.manifest), n(b.x2.manifest), n(b.y.manifest), n(b.z.manifest)
    U = n(b.U)
    x = {
        "stored_bytes": BASE + L1 + S + cx1 + cx2 + mx1 + mx2,
        "unique_bytes": L1 + cx1 + cx2 + mx1 + mx2,
        "shared_bytes": BASE + S,
        "attributed_bytes": BASE / 3 + L1 + S / 2 + cx1 + cx2 + mx1 + mx2,
        "blobs": 5,  # BASE, L1, S, cx1, cx2 (U is uploaded but referenced by no manifest)
        "manifests": 2,
        "tags": 2,
        "pushes": 2,
        "pulls": 2,
        "bytes_served": L1 + 100,
        "bytes_received": cx1 + BASE + L1 + cx2 + BASE + S + U,  # every upload, deduplicated or not
    }
    y = {
        "stored_bytes": BASE + S + L2 + cy + my,
        "unique_bytes": L2 + cy + my,
        "shared_bytes": BASE + S,
        "attributed_bytes": BASE / 3 + S / 2 + L2 + cy + my,
        "blobs": 4,
        "manifests": 1,
        "tags": 2,
        "pushes": 2,  # the same manifest PUT under two tags
        "pulls": 1,
        "bytes_served": 0,
        "bytes_received": cy + BASE + S + L2,
    }
    z = {
        "stored_bytes": BASE + L3 + cz + mz,
        "unique_bytes": L3 + cz + mz,
        "shared_bytes": BASE,
        "attributed_bytes": BASE / 3 + L3 + cz + mz,
        "blobs": 3,
        "manifests": 1,
        "tags": 1,
        "pushes": 1,
        "pulls": 1,
        "bytes_served": L3,
        "bytes_received": cz + BASE + L3,
    }
    a = {
        "repositories": 2,
        "stored_bytes": BASE + L1 + S + L2 + cx1 + cx2 + cy + mx1 + mx2 + my,
        "unique_bytes": L1 + S + L2 + cx1 + cx2 + cy + mx1 + mx2 + my,  # BASE is also in namespace b
        "shared_bytes": BASE,
        "attributed_bytes": x["attributed_bytes"] + y["attributed_bytes"],
        "blobs": 7,
        "manifests": 3,
        "tags": 4,
        "pushes": 4,
        "pulls": 3,
        "bytes_served": L1 + 100,
    }
    bns = {
        "repositories": 1,
        **{k: z[k] for k in ("stored_bytes", "unique_bytes", "shared_bytes", "attributed_bytes", "blobs")},
        **{k: z[k] for k in ("manifests", "tags", "pushes", "pulls", "bytes_served")},
    }
    blob_bytes = BASE + L1 + S + L2 + L3 + U + cx1 + cx2 + cy + cz
    manifest_bytes = mx1 + mx2 + my + mz
    totals = {
        "repositories": 3,
        "namespaces": 2,
        "blobs": 10,
        "manifests": 4,
        "tags": 5,
        "blob_bytes": blob_bytes,
        "manifest_bytes": manifest_bytes,
        "stored_bytes": blob_bytes + manifest_bytes,
        "referenced_bytes": blob_bytes + manifest_bytes - U,
        "unreferenced_bytes": U,
        "pushes": 5,
        "pulls": 4,
        "bytes_served": L1 + 100 + L3,
    }
    # The namespace quota counts linked blobs (U too), as the quota check does.
    quota_used = a["stored_bytes"] + U
    return {"a/x": x, "a/y": y, "b/z": z, "a": a, "b": bns, "totals": totals, "quota_used": quota_used}


def assert_figures(found: dict[str, Any], want: dict[str, Any]) -> None:
    for key, value in want.items():
        if key == "attributed_bytes":
            assert found[key] == pytest.approx(value, abs=0.001), (key, found[key], value)
        else:
            assert found[key] == value, (key, found[key], value)


# -- the figures -----------------------------------------------------------------------------------


def test_repository_figures_are_the_hand_computed_sums(built: Built):
    report = conforms(built.api("admin", "/usage").json(), "UsageReport")
    want = expected(built)
    repos = {r["name"]: r for r in report["repositories"]}
    assert list(repos) == ["a/x", "a/y", "b/z"]
    for name in ("a/x", "a/y", "b/z"):
        assert_figures(repos[name], want[name])
        assert repos[name]["namespace"] == name.split("/")[0]
        assert repos[name]["last_push_at"] is not None and repos[name]["last_pull_at"] is not None
        assert repos[name]["bytes_served_30d"] == repos[name]["bytes_served"]
        assert_cost(repos[name]["cost"], want[name]["attributed_bytes"], want[name]["bytes_served"])
    # Attributed bytes add up to what the repositories' manifests keep alive.
    attributed = sum(r["attributed_bytes"] for r in repos.values())
    assert attributed == pytest.approx(want["totals"]["referenced_bytes"], abs=0.01)


def test_namespace_figures_count_shared_bytes_once(built: Built):
    report = built.api("admin", "/usage").json()
    want = expected(built)
    spaces = {n["name"]: n for n in report["namespaces"]}
    assert list(spaces) == ["a", "b"]
    for name in ("a", "b"):
        assert_figures(spaces[name], want[name])
        assert spaces[name]["complete"] is True
        assert_cost(spaces[name]["cost"], want[name]["attributed_bytes"], want[name]["bytes_served"])
    assert spaces["a"]["quota"] == {
        "limit_bytes": 1_000_000,
        "used_bytes": want["quota_used"],
        "headroom_bytes": 1_000_000 - want["quota_used"],
    }
    assert spaces["b"]["quota"] is None
    # The quota module's own answer is the same.
    quota = httpx.get(f"{built.server.url}/api/v1/quotas/a", auth=("admin", ADMIN_PASSWORD)).json()
    assert quota["used_bytes"] == want["quota_used"]


def test_registry_totals_for_a_site_admin(built: Built):
    report = built.api("admin", "/usage").json()
    want = expected(built)
    totals = report["totals"]
    assert_figures(totals, want["totals"])
    assert_cost(totals["cost"], want["totals"]["stored_bytes"], want["totals"]["bytes_served"])
    assert report["prices"] == {"storage_gb_month": PRICE_STORAGE, "egress_gb": PRICE_EGRESS, "bytes_per_gb": GB}
    assert report["days"] == 30
    assert sum(r["cost"]["storage"] for r in report["repositories"]) == pytest.approx(
        want["totals"]["referenced_bytes"] / GB * PRICE_STORAGE
    )


def test_pulled_manifests_and_repositories_record_their_last_pull(built: Built):
    data_dir = built.server.data_dir
    rows = dict(
        sql(
            data_dir,
            "SELECT r.name || '@' || rm.digest, rm.last_pulled_at FROM repository_manifests rm "
            "JOIN repositories r ON r.id = rm.repository_id",
        )
    )
    pushed = dict(sql(data_dir, "SELECT name, last_push_at FROM repositories"))
    pulled = dict(sql(data_dir, "SELECT name, last_pull_at FROM repositories"))
    assert rows[f"a/x@{built.x1.digest}"] is not None
    assert rows[f"a/x@{built.x2.digest}"] is None  # never pulled
    assert rows[f"a/y@{built.y.digest}"] is not None and rows[f"b/z@{built.z.digest}"] is not None
    assert all(pulled[name] >= pushed[name] for name in ("a/x", "a/y", "b/z"))


def test_one_repository_with_its_daily_series(built: Built):
    r = built.api("admin", "/usage/repositories/a/x", params={"days": 7})
    body = conforms(r.json(), "RepositoryUsageReport")
    assert r.status_code == 200 and body["days"] == 7
    want = expected(built)["a/x"]
    assert_figures(body["repository"], want)
    daily = body["repository"]["daily"]
    assert len(daily) == 7 and daily[0]["day"] == body["since"] and daily[-1]["day"] == body["until"]
    today = daily[-1]
    assert (today["pushes"], today["pulls"], today["bytes_served"]) == (2, 2, want["bytes_served"])
    assert today["bytes_received"] == want["bytes_received"]
    assert all(d["pushes"] == d["pulls"] == 0 for d in daily[:-1])


# -- permissions -----------------------------------------------------------------------------------


def test_a_user_sees_only_what_they_can_pull(built: Built):
    report = conforms(built.api("pat", "/usage").json(), "UsageReport")
    want = expected(built)
    # A grant on a/x, and b/z is public; a/y is neither.
    assert [r["name"] for r in report["repositories"]] == ["a/x", "b/z"]
    assert report["totals"] is None
    spaces = {n["name"]: n for n in report["namespaces"]}
    # Namespace a summarised over a/x alone: its bytes, with BASE and S shared (elsewhere).
    a = spaces["a"]
    assert a["complete"] is False and a["repositories"] == 1 and a["quota"] is None
    assert a["stored_bytes"] == want["a/x"]["stored_bytes"]
    assert a["unique_bytes"] == want["a/x"]["stored_bytes"] - want["a/x"]["shared_bytes"] + len(built.S)
    assert a["attributed_bytes"] == pytest.approx(want["a/x"]["attributed_bytes"], abs=0.001)
    assert spaces["b"]["complete"] is True
    assert built.api("pat", "/usage/repositories/a/x").status_code == 200
    assert_error(built.api("pat", "/usage/repositories/a/y"), 404, "NOT_FOUND")
    assert_error(built.api("pat", "/usage/repositories/a/nothing"), 404, "NOT_FOUND")
    assert [r["name"] for r in built.api("pat", "/usage", params={"namespace": "a"}).json()["repositories"]] == ["a/x"]


def test_anonymous_callers_are_refused(built: Built):
    assert_error(httpx.get(f"{built.server.url}/api/v1/usage"), 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/usage", {"days": "0"}),
        ("/usage", {"days": "367"}),
        ("/usage", {"days": "abc"}),
        ("/usage", {"days": "-1"}),
        ("/usage", {"namespace": "a/x"}),
        ("/usage", {"namespace": "A"}),
        ("/usage/repositories/Bad_Name", {}),
        ("/usage/repositories/a/x", {"days": "1e3"}),
    ],
)
def test_bad_input_is_400(built: Built, path: str, params: dict[str, str]):
    assert_error(built.api("admin", path, params=params), 400, "BAD_REQUEST")


def test_a_namespace_filter(built: Built):
    report = built.api("admin", "/usage", params={"namespace": "b"}).json()
    assert [r["name"] for r in report["repositories"]] == ["b/z"]
    assert [n["name"] for n in report["namespaces"]] == ["b"]
    assert_figures(report["namespaces"][0], expected(built)["b"])


# -- the command line ------------------------------------------------------------------------------


def _cli(built: Built, *args: str) -> subprocess.CompletedProcess[str]:
    env = cli_env(
        built.server.data_dir,
        DOCKYARD_PRICE_STORAGE_GB_MONTH=str(PRICE_STORAGE),
        DOCKYARD_PRICE_EGRESS_GB=str(PRICE_EGRESS),
    )
    return subprocess.run(
        [sys.executable, "-m", "dockyard", "usage", "--data-dir", str(built.server.data_dir), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_the_cli_prints_the_same_figures_as_json(built: Built):
    done = _cli(built, "--json")
    assert done.returncode == 0, done.stderr
    cli = json.loads(done.stdout)
    api = built.api("admin", "/usage").json()
    for body in (cli, api):
        body.pop("generated_at")
    assert cli == api
    assert_figures(cli["totals"], expected(built)["totals"])


def test_the_cli_table(built: Built):
    done = _cli(built)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for name in ("a/x", "a/y", "b/z", "Namespaces", "Registry:"):
        assert name in out, out
    done = _cli(built, "--repository", "a/x", "--days", "3")
    assert done.returncode == 0, done.stderr
    assert "a/x by day" in done.stdout and "a/y" not in done.stdout
    one = json.loads(_cli(built, "--repository", "a/x", "--json").stdout)
    assert [r["name"] for r in one["repositories"]] == ["a/x"] and len(one["repositories"][0]["daily"]) == 30
    missing = _cli(built, "--repository", "a/nothing")
    assert missing.returncode != 0 and "no repository named" in missing.stderr
    bad = _cli(built, "--namespace", "a/x")
    assert bad.returncode != 0 and "one path component" in bad.stderr
