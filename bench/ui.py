#!/usr/bin/env python3
"""Web UI page times on a registry of 1,000 repositories and 10,000 tags (issue 5: "pages render
in under 200 ms of server time").

Usage: ``.venv/bin/python bench/ui.py [--repos 1000] [--tags 10000] [--quotas 20] [-n 30] [--only REGEX]
[--keep] [--out FILE]``
(needs the project's virtualenv: the data is seeded with dockyard's own schema and functions).

1. Seeds a fresh data folder directly, without HTTP (pushing 10,000 tags would take minutes and
   measure the push path, not the pages): a migrated database with the repositories, manifests,
   tags, blob rows and links that pushes would have written, plus each image config as a real
   blob in storage (the tag list and the manifest page read configs for platforms and history;
   layer bytes are not written, no page reads them). One repository holds a tenth of the tags
   (the worst case for a repository page), the rest about nine each; a fifth of the repositories
   tag a two-platform index, a tenth have a signature referring to ``latest``, a third are
   public. Around them: 40 organizations with teams, robots, grants and policies, storage quotas
   on ``--quotas`` of them, 50 users, access tokens, 30 days of usage figures per repository,
   20,000 audit events, webhooks with 500 deliveries, and garbage collection and retention runs,
   so every page has a realistic amount to show. Accounts, organizations, grants, tokens,
   policies and quotas go through dockyard's own functions; the bulk rows are inserted as the
   store would have written them.
2. Starts ``dockyard serve`` on it with token authentication (scheduled GC off), signs in
   through ``POST /login`` as the site admin and as ``member`` (a user whose team may push to 10
   of the 40 namespaces), and requests each page N times, one after another on a keep-alive
   connection, as the site admin, as the member and anonymously (administration pages: those
   the visitor may open). The first request of each page and visitor is reported apart
   ("first"): it fills the server's caches (image configs, the usage report's holdings).
3. Prints, per page and visitor, the median and p95 of the response time seen by the client
   and of the CPU the server spent on each request (on-CPU nanoseconds of all its threads from
   ``/proc/<pid>/task/*/schedstat``, sampled around each request; the utime+stime delta of
   ``/proc/<pid>/stat`` over the N requests divided by N is printed as a cross-check, at its
   10 ms tick resolution). Server CPU is the "server time" the issue asks about; the response
   time adds the loopback round trip and any wait on disk. The last column says whether the
   p95 of both stays under 200 ms. Nothing is asserted: it is a report. ``--out FILE`` writes
   all figures as JSON.
"""

from __future__ import annotations

import argparse
import atexit
import glob
import hashlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from benchlib import Target, proc_cpu_seconds, wait_quiet
from compare import BENCH_PASSWORD, ROOT, Server

try:
    import sqlalchemy as sa

    from dockyard.auth import accounts, credentials, passwords
    from dockyard.meta.db import Database
    from dockyard.meta.tables import (
        audit_events,
        blobs,
        job_runs,
        manifest_references,
        manifests,
        repositories,
        repository_blobs,
        repository_manifests,
        tags,
        usage_daily,
        users,
        webhook_deliveries,
        webhooks,
    )
    from dockyard.registry import policies, quotas
except ImportError as exc:  # pragma: no cover - a hint, not a feature
    raise SystemExit(
        f"bench/ui.py seeds with dockyard's own code: run it with {ROOT}/.venv/bin/python ({exc})"
    ) from None

MEMBER = "member"
MEMBER_PASSWORD = "bench-member-password"
BUDGET_MS = 200.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
DAY = 86400.0


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


# -- seeding ------------------------------------------------------------------------------------


@dataclass
class Seeded:
    """What the pages are asked about: names and digests picked while seeding."""

    typical: str = ""  # a public repository with about nine tags
    big: str = ""  # the public repository holding a tenth of the tags
    private: str = ""  # a private repository the member can read
    image: str = ""  # an image manifest in ``typical``
    index: str = ""  # a two-platform index in ``typical``
    org: str = ""
    webhook_id: int = 0
    counts: dict[str, int] = field(default_factory=dict)


class Rows:
    """The bulk rows, collected in memory and inserted in one transaction."""

    def __init__(self, data_dir: Path, now: float, rng: random.Random) -> None:
        self.data_dir = data_dir
        self.now = now
        self.rng = rng
        self.blobs: dict[str, dict[str, Any]] = {}
        self.manifests: dict[str, dict[str, Any]] = {}
        self.references: list[dict[str, Any]] = []
        self.repo_manifests: list[dict[str, Any]] = []
        self.repo_blobs: set[tuple[int, str]] = set()
        self.tags: list[dict[str, Any]] = []

    def blob(self, digest: str, size: int, data: bytes | None = None) -> str:
        """A blob row; with ``data``, the bytes too, where the filesystem driver keeps them."""
        if data is not None:
            hexdigest = digest.split(":", 1)[1]
            path = self.data_dir / "blobs" / "sha256" / hexdigest[:2] / hexdigest
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        self.blobs.setdefault(
            digest, {"digest": digest, "size": size, "created_at": self.now, "storage_key": None,
                     "unreferenced_since": None},
        )  # fmt: skip
        return digest

    def manifest(self, repo_id: int, content: bytes, media_type: str, refs: list[tuple[str, str]], at: float,
                 subject: str | None = None, artifact_type: str | None = None) -> str:  # fmt: skip
        digest = digest_of(content)
        if digest not in self.manifests:
            self.manifests[digest] = {
                "digest": digest, "media_type": media_type, "size": len(content), "content": content,
                "subject": subject, "artifact_type": artifact_type, "annotations": None, "created_at": at,
            }  # fmt: skip
            self.references += [{"manifest_digest": digest, "target_digest": d, "kind": k} for d, k in refs]
        self.repo_manifests.append({"repository_id": repo_id, "digest": digest, "created_at": at,
                                    "last_pulled_at": at + DAY if self.rng.random() < 0.5 else None})  # fmt: skip
        for target, kind in refs:
            if kind == "blob":
                self.repo_blobs.add((repo_id, target))
        return digest


def _image(rows: Rows, rng: random.Random, repo_id: int, base: list[tuple[str, int]], label: str, at: float,
           arch: str = "amd64") -> tuple[str, int]:  # fmt: skip
    """An image: its own config (written to storage) and layer, two shared base layers."""
    config = canonical({
        "architecture": arch, "os": "linux", **({"variant": "v8"} if arch == "arm64" else {}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)),
        "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", f"APP_VERSION={label}"],
                   "Entrypoint": ["/usr/local/bin/app"], "Labels": {"org.opencontainers.image.version": label}},
        "rootfs": {"type": "layers", "diff_ids": [digest_of(f"{label}{i}".encode()) for i in range(3)]},
        "history": [
            {"created_by": "ADD rootfs.tar.gz / # buildkit"},
            {"created_by": "ENV PATH=/usr/local/bin:/usr/bin:/bin", "empty_layer": True},
            {"created_by": "RUN /bin/sh -c apt-get update && apt-get install -y ca-certificates # buildkit"},
            {"created_by": f"COPY app-{label} /usr/local/bin/app # buildkit"},
        ],
    })  # fmt: skip
    config_digest = rows.blob(digest_of(config), len(config), config)
    own = rows.blob(digest_of(os.urandom(32)), rng.randint(10_000, 30_000_000))
    layers = [*rng.sample(base, 2), (own, rows.blobs[own]["size"])]
    content = canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": s} for d, s in layers],
    })  # fmt: skip
    refs = [(config_digest, "blob"), *((d, "blob") for d, _ in layers)]
    return rows.manifest(repo_id, content, OCI_MANIFEST, refs, at, artifact_type=OCI_CONFIG), len(content)


def _index(rows: Rows, rng: random.Random, repo_id: int, base: list[tuple[str, int]], label: str, at: float) -> str:
    children = [(arch, *_image(rows, rng, repo_id, base, label, at, arch)) for arch in ("amd64", "arm64")]
    content = canonical({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": d, "size": size,
             "platform": {"architecture": arch, "os": "linux", **({"variant": "v8"} if arch == "arm64" else {})}}
            for arch, d, size in children
        ],
    })  # fmt: skip
    return rows.manifest(repo_id, content, OCI_INDEX, [(d, "manifest") for _, d, _ in children], at)


def _signature(rows: Rows, repo_id: int, subject: str, at: float) -> None:
    payload = canonical({"critical": {"image": {"docker-manifest-digest": subject}}})
    blob = rows.blob(digest_of(payload), len(payload))
    empty = rows.blob(digest_of(b"{}"), 2, b"{}")
    content = canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SIGNATURE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": blob,
                    "size": len(payload)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 0},
    })  # fmt: skip
    refs = [(empty, "blob"), (blob, "blob")]
    rows.manifest(repo_id, content, OCI_MANIFEST, refs, at, subject=subject, artifact_type=SIGNATURE)


def tag_counts(repos: int, total: int) -> list[int]:
    """Tags per repository: the first holds a tenth, the others share the rest evenly."""
    big = total // 10 if repos > 1 else total
    rest, extra = divmod(total - big, max(repos - 1, 1))
    return [big] + [rest + (1 if i < extra else 0) for i in range(repos - 1)]


def seed(data_dir: Path, repo_count: int, tag_total: int, quota_count: int, rng: random.Random) -> Seeded:
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite:///{data_dir.resolve() / 'dockyard.db'}")
    db.migrate()
    now = time.time()
    rows = Rows(data_dir, now, rng)
    found = Seeded()
    orgs = [f"org-{i:02d}" for i in range(40)]
    base = [(rows.blob(digest_of(f"base-{i}".encode()), rng.randint(2_000_000, 80_000_000)), 0) for i in range(50)]
    base = [(d, rows.blobs[d]["size"]) for d, _ in base]
    repo_rows = []
    for r, count in enumerate(tag_counts(repo_count, tag_total)):
        repo_id = r + 1
        org = orgs[r % len(orgs)]
        name = f"{org}/monorepo" if r == 0 else f"{org}/service-{r:04d}"
        public = r % 3 == 0
        created = now - 300 * DAY + r * 1000
        last_push = created
        versions = max(count - 1, 1)  # the last tag is "latest", pointing at the newest version
        digests = []
        for v in range(versions):
            at = created + (v + 1) * (250 * DAY / versions)
            label = f"1.{v // 10}.{v % 10}"
            if r % 5 == 1 and v == versions - 1:
                digests.append((label, _index(rows, rng, repo_id, base, label, at), at))
            else:
                digests.append((label, _image(rows, rng, repo_id, base, label, at)[0], at))
            last_push = at
        if count > 1:
            digests.append(("latest", digests[-1][1], digests[-1][2]))
        rows.tags += [{"repository_id": repo_id, "name": t, "digest": d, "updated_at": at} for t, d, at in digests]
        if r % 10 == 6:
            _signature(rows, repo_id, digests[-1][1], last_push)
        repo_rows.append({
            "id": repo_id, "name": name, "created_at": created, "visibility": "public" if public else "private",
            "last_push_at": last_push, "last_pull_at": now - rng.random() * 10 * DAY,
            "description": f"# {name}\n\nThe **{name.split('/')[1]}** service of {org}.\n\n- built nightly\n- `make`",
        })  # fmt: skip
        if r == 6:  # public, about nine tags, the newest an index with a signature
            found.typical, found.image, found.index = name, digests[0][1], digests[-1][1]
        if r == 40:  # private, in org-00, whose team "devs" the member belongs to
            found.private = name
    found.big = repo_rows[0]["name"]

    def bulk(conn: sa.Connection) -> None:
        conn.execute(sa.insert(repositories), repo_rows)
        conn.execute(sa.insert(blobs), list(rows.blobs.values()))
        conn.execute(sa.insert(manifests), list(rows.manifests.values()))
        conn.execute(sa.insert(manifest_references), rows.references)
        conn.execute(sa.insert(repository_manifests), rows.repo_manifests)
        conn.execute(
            sa.insert(repository_blobs),
            [{"repository_id": r, "digest": d, "created_at": now} for r, d in sorted(rows.repo_blobs)],
        )
        conn.execute(sa.insert(tags), rows.tags)
        conn.execute(sa.insert(usage_daily), _usage_rows(rng, len(repo_rows), now))
        conn.execute(sa.insert(job_runs), _job_rows(rng, now))

    db.run_sync(bulk)
    found.org = orgs[0]
    found.webhook_id = db.run_sync(_accounts, orgs, repo_rows, quota_count, rng, now)
    found.counts = db.run_sync(_counts)
    db.close()
    return found


def _usage_rows(rng: random.Random, repo_count: int, now: float) -> list[dict[str, Any]]:
    """30 days of pulls and pushes for every repository, busier for a few."""
    out = []
    for repo_id in range(1, repo_count + 1):
        weight = 20 if repo_id % 50 == 1 else 1
        for day in range(30):
            pulls, pushes = rng.randint(0, 20) * weight, rng.randint(0, 2)
            out.append({
                "repository_id": repo_id, "day": time.strftime("%Y-%m-%d", time.gmtime(now - day * DAY)),
                "pulls": pulls, "pushes": pushes, "bytes_served": pulls * rng.randint(1_000_000, 50_000_000),
                "bytes_received": pushes * rng.randint(100_000, 10_000_000),
            })  # fmt: skip
    return out


def _job_rows(rng: random.Random, now: float) -> list[dict[str, Any]]:
    out = []
    for i in range(60):
        started = now - i * DAY / 2
        out.append({
            "job": "gc", "trigger": "schedule", "dry_run": i % 10 == 0, "started_at": started,
            "finished_at": started + 4,
            "result": json.dumps({"blobs_removed": rng.randint(0, 300), "manifests_removed": rng.randint(0, 40),
                                  "uploads_removed": rng.randint(0, 3), "bytes_freed": rng.randint(0, 10**10),
                                  "seconds": 3.9}),
        })  # fmt: skip
        if i % 2 == 0:
            out.append({
                "job": "retention", "trigger": "schedule", "dry_run": False, "started_at": started - 5,
                "finished_at": started - 1,
                "result": json.dumps({"tags": rng.randint(0, 50), "manifests": rng.randint(0, 50), "skipped": 0}),
            })  # fmt: skip
    return out


def _accounts(conn: sa.Connection, orgs: list[str], repo_rows: list[dict[str, Any]], quota_count: int,
              rng: random.Random, now: float) -> int:  # fmt: skip
    """People and rules through dockyard's own functions (one password hash, shared by the
    extra users: argon2 costs ~0.3 s a hash, and their passwords are never used)."""
    accounts.ensure_admin(conn, BENCH_PASSWORD)
    shared_hash = passwords.hash_password(MEMBER_PASSWORD)
    people = [MEMBER, *(f"user-{i:02d}" for i in range(50))]
    conn.execute(sa.insert(users), [
        {"name": n, "password_hash": shared_hash, "is_admin": False, "created_at": now - 100 * DAY, "disabled": False}
        for n in people
    ])  # fmt: skip
    for i, org in enumerate(orgs):
        accounts.create_org(conn, org)
        for team in ("devs", "ops"):
            accounts.create_team(conn, org, team)
            for user in rng.sample(people[1:], 5):
                accounts.add_member(conn, org, team, user)
        accounts.grant(conn, "team", f"{org}/devs", "write", namespace=org)
        accounts.grant(conn, "team", f"{org}/ops", "admin", namespace=org)
        credentials.create_robot(conn, org, "ci")
        accounts.grant(conn, "robot", f"{org}+ci", "write", namespace=org)
        if i < 10:
            accounts.add_member(conn, org, "devs", MEMBER)
            policies.set_policy(conn, "retention", org, None, policies.parse_rules("retention", {"keep_last": 50}))
        if i < 5:
            policies.set_policy(
                conn, "immutability", org, None, policies.parse_rules("immutability", {"patterns": ["1.*"]})
            )
        if i < quota_count:
            quotas.set_quota(conn, org, 500 * 10**9)
    for i in range(5):
        credentials.create_token(conn, accounts.ADMIN_USER, f"ci-{i}", "read-write")
        credentials.create_token(conn, MEMBER, f"laptop-{i}", "read")
    hook_ids = []
    for i in range(5):
        hook_ids.append(conn.execute(sa.insert(webhooks).values(
            namespace=orgs[i], repository=None, url=f"http://127.0.0.1:9/hook-{i}", secret="s" * 32,
            events="push,delete", enabled=True, created_at=now - 50 * DAY,
        )).inserted_primary_key[0])  # fmt: skip
    conn.execute(sa.insert(webhook_deliveries), [
        {"delivery_id": f"00000000-0000-4000-8000-{i:012d}", "webhook_id": hook_ids[0], "event": "push",
         "payload": json.dumps({"event": "push", "repository": repo_rows[0]["name"], "tag": f"1.0.{i % 10}"}),
         "status": "delivered" if i % 7 else "failed", "attempts": 1 if i % 7 else 5, "next_attempt_at": now - i * 600,
         "lease_until": None, "created_at": now - i * 600, "delivered_at": now - i * 600 + 1 if i % 7 else None,
         "last_status": 200 if i % 7 else 503, "last_error": None if i % 7 else "HTTP 503", "last_duration_ms": 12.5}
        for i in range(500)
    ])  # fmt: skip
    actions = ("push", "pull", "pull", "pull", "delete", "login")
    conn.execute(sa.insert(audit_events), [
        {"at": now - i * 120, "action": actions[i % len(actions)], "actor": people[i % len(people)],
         "client": "127.0.0.1", "repository": repo_rows[i % len(repo_rows)]["name"], "reference": "latest",
         "outcome": "ok" if i % 13 else "denied", "detail": None}
        for i in range(20_000)
    ])  # fmt: skip
    return hook_ids[0]


def _counts(conn: sa.Connection) -> dict[str, int]:
    tables = {"repositories": repositories, "tags": tags, "manifests": manifests, "blobs": blobs,
              "users": users, "audit_events": audit_events, "usage_daily": usage_daily}  # fmt: skip
    return {k: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for k, t in tables.items()}


# -- measuring ----------------------------------------------------------------------------------


def thread_cpu_ns(pid: int) -> int | None:
    """On-CPU nanoseconds of all of a process's threads (the first field of each task's
    schedstat): fine-grained enough to charge single requests, unlike the 10 ms ticks of stat."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended between the listing and the read
    return total or None


def sign_in(target: Target, user: str, password: str) -> str:
    """POST the sign-in form as a browser does (same Origin); returns the session cookie."""
    conn = target.connect(timeout=60)
    try:
        body = urlencode({"username": user, "password": password, "next": "/"})
        conn.request("POST", "/login", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Origin": target.base})  # fmt: skip
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    cookie = next((v for k, v in resp.getheaders() if k.lower() == "set-cookie" and "dockyard_session=" in v), None)
    if resp.status != 303 or cookie is None:
        raise SystemExit(f"sign-in as {user} failed: {resp.status}")
    return cookie.split(";", 1)[0]


@dataclass
class Measured:
    page: str
    path: str
    visitor: str
    status: int
    bytes: int
    first_ms: float
    wall_ms: list[float]
    cpu_ms: list[float]
    stat_cpu_ms_mean: float | None

    def summary(self) -> dict[str, Any]:
        return {
            "page": self.page, "path": self.path, "visitor": self.visitor, "status": self.status,
            "bytes": self.bytes, "first_ms": round(self.first_ms, 2), "n": len(self.wall_ms),
            "wall_ms_median": round(statistics.median(self.wall_ms), 2), "wall_ms_p95": round(p95(self.wall_ms), 2),
            "cpu_ms_median": round(statistics.median(self.cpu_ms), 2), "cpu_ms_p95": round(p95(self.cpu_ms), 2),
            "stat_cpu_ms_mean": None if self.stat_cpu_ms_mean is None else round(self.stat_cpu_ms_mean, 2),
        }  # fmt: skip


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


def time_page(target: Target, pid: int, page: str, path: str, visitor: str, cookie: str | None, n: int) -> Measured:
    headers = {"Accept": "text/html", **({"Cookie": cookie} if cookie else {})}
    conn = target.connect(timeout=120)

    def one() -> tuple[float, float, int, int]:
        cpu0, t0 = thread_cpu_ns(pid), time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        t1, cpu1 = time.perf_counter(), thread_cpu_ns(pid)
        cpu = (cpu1 - cpu0) / 1e6 if cpu0 is not None and cpu1 is not None else float("nan")
        return (t1 - t0) * 1000, cpu, resp.status, len(body)

    try:
        first_ms, _, status, size = one()
        if status != 200:
            raise SystemExit(f"{visitor} GET {path} -> {status}")
        wall, cpu = [], []
        stat0 = proc_cpu_seconds(pid)
        for _ in range(n):
            w, c, status, size = one()
            if status != 200:
                raise SystemExit(f"{visitor} GET {path} -> {status}")
            wall.append(w)
            cpu.append(c)
        stat1 = proc_cpu_seconds(pid)
    finally:
        conn.close()
    stat_mean = (stat1 - stat0) * 1000 / n if stat0 is not None and stat1 is not None else None
    return Measured(page, path, visitor, status, size, first_ms, wall, cpu, stat_mean)


def pages(found: Seeded) -> list[tuple[str, str, tuple[str, ...]]]:
    """(label, path, visitors) of every page timed."""
    everyone, signed_in, admin = ("admin", "member", "anonymous"), ("admin", "member"), ("admin",)
    typical, big = quote(found.typical), quote(found.big)
    return [
        ("list", "/", everyone),
        ("list by size", "/?sort=size", everyone),
        ("list by last push", "/?sort=push", everyone),
        ("list search", "/?q=service-05", everyone),
        ("list namespace", f"/?namespace={found.org}", everyone),
        ("list page 5", "/?page=5", everyone),
        ("repository", f"/r/{typical}", everyone),
        ("repository 1,000 tags", f"/r/{big}", everyone),
        ("repository tag page 10", f"/r/{big}?page=10", everyone),
        ("repository tag search", f"/r/{big}?tag=1.5", everyone),
        ("repository (private)", f"/r/{quote(found.private)}", signed_in),
        ("manifest image", f"/r/{typical}/-/manifests/{found.image}", everyone),
        ("manifest index", f"/r/{typical}/-/manifests/{found.index}", everyone),
        ("usage", "/usage", everyone),
        ("usage by pulls", "/usage?sort=pulls&page=2", everyone),
        ("usage repository", f"/usage/r/{big}", everyone),
        ("sign-in form", "/login", ("anonymous",)),
        ("admin overview", "/admin", signed_in),
        ("admin tokens", "/admin/tokens", signed_in),
        ("admin users", "/admin/users", admin),
        ("admin orgs", "/admin/orgs", signed_in),
        ("admin org", f"/admin/orgs/{found.org}", admin),
        ("admin policies", "/admin/policies", signed_in),
        ("admin quotas", "/admin/quotas", signed_in),
        ("admin webhooks", "/admin/webhooks", signed_in),
        ("admin webhook deliveries", f"/admin/webhooks/{found.webhook_id}", admin),
        ("admin audit", "/admin/audit", admin),
        ("admin audit filtered", f"/admin/audit?action=delete&repository={big}", admin),
    ]


# -- the run ------------------------------------------------------------------------------------


class UiServer(Server):
    """compare.Server's dockyard with token authentication, without the scheduled collection
    (a GC of 10,000 manifests in the middle of the timings would be billed to some page)."""

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().command()
        return cmd, {**env, "DOCKYARD_GC_INTERVAL": "0"}


def _on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def print_table(results: list[Measured]) -> None:
    header = (f"{'page':<26} {'visitor':<9} {'status':>6} {'KiB':>6} {'first':>7} {'wall p50':>8} {'wall p95':>8} "
              f"{'cpu p50':>8} {'cpu p95':>8} {'stat cpu':>8}  < {BUDGET_MS:.0f} ms")  # fmt: skip
    print(header)
    print("-" * len(header))
    for m in results:
        s = m.summary()
        ok = s["wall_ms_p95"] < BUDGET_MS and s["cpu_ms_p95"] < BUDGET_MS
        stat = "" if s["stat_cpu_ms_mean"] is None else f"{s['stat_cpu_ms_mean']:.1f}"
        print(f"{m.page:<26} {m.visitor:<9} {m.status:>6} {m.bytes / 1024:>6.0f} {s['first_ms']:>7.1f} "
              f"{s['wall_ms_median']:>8.1f} {s['wall_ms_p95']:>8.1f} {s['cpu_ms_median']:>8.1f} "
              f"{s['cpu_ms_p95']:>8.1f} {stat:>8}  {'yes' if ok else 'NO'}")  # fmt: skip
    print("(milliseconds; first: the first request of the page and visitor; cpu: server CPU per request from "
          "schedstat; stat cpu: utime+stime over the N requests / N)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--quotas", type=int, default=20, help="namespaces (of 40) with a storage quota")
    parser.add_argument("-n", "--requests", type=int, default=30, help="timed requests per page and visitor")
    parser.add_argument("--only", default="", help="a regular expression: time only the pages whose label matches")
    parser.add_argument("--keep", action="store_true", help="keep the data folder (its path is printed)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.repos < 50 or args.tags < 2 * args.repos:
        parser.error("at least 50 repositories and two tags per repository")
    workdir = Path(tempfile.mkdtemp(prefix="dockyard-ui-bench-"))
    server = UiServer("dockyard-auth", workdir)
    atexit.register(server.stop)
    if not args.keep:
        atexit.register(shutil.rmtree, workdir, True)
    signal.signal(signal.SIGTERM, _on_signal)

    started = time.monotonic()
    found = seed(server.workdir / "data", args.repos, args.tags, args.quotas, random.Random(5))
    print(f"seeded {json.dumps(found.counts)} in {time.monotonic() - started:.1f} s ({server.workdir / 'data'})",
          flush=True)  # fmt: skip
    server.start()
    target = Target.parse(server.url)
    cookies: dict[str, str | None] = {
        "admin": sign_in(target, "admin", BENCH_PASSWORD),
        "member": sign_in(target, MEMBER, MEMBER_PASSWORD),
        "anonymous": None,
    }
    busy = wait_quiet()
    results: list[Measured] = []
    only: Callable[[str], bool] = re.compile(args.only).search if args.only else (lambda _label: True)
    for label, path, visitors in pages(found):
        if not only(label):
            continue
        for visitor in visitors:
            results.append(time_page(target, server.pid, label, path, visitor, cookies[visitor], args.requests))
    if server.proc is not None and server.proc.poll() is not None:
        raise SystemExit(f"the server died during the run; see {server.log_path}")
    print()
    print_table(results)
    worst_cpu = max(results, key=lambda m: p95(m.cpu_ms))
    worst_wall = max(results, key=lambda m: p95(m.wall_ms))
    print(
        f"\nslowest p95 server CPU: {worst_cpu.page} ({worst_cpu.visitor}) {p95(worst_cpu.cpu_ms):.1f} ms; "
        f"slowest p95 response: {worst_wall.page} ({worst_wall.visitor}) {p95(worst_wall.wall_ms):.1f} ms"
    )
    if busy > 0.2:
        print(f"note: the machine was {busy:.0%} busy when the timings started")
    if args.out:
        args.out.write_text(json.dumps({
            "repositories": args.repos, "tags": args.tags, "requests": args.requests, "budget_ms": BUDGET_MS,
            "counts": found.counts, "cpu_count": os.cpu_count(), "machine_busy_at_start": busy,
            "pages": [m.summary() for m in results],
        }, indent=2))  # fmt: skip
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
