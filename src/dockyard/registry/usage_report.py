"""Usage figures and monthly cost estimates per repository, per namespace and for the registry.

What a repository *stores* is what its manifests keep alive: the manifests linked to it and the
distinct blobs they reference (``manifest_references`` of kind 'blob'). Uploaded blobs that no
manifest references yet, and blobs or manifests waiting for garbage collection, belong to no
repository; they count in the registry's physical total only (``unreferenced_bytes``).

Deduplication makes "how much does this repository cost" a matter of definition, so three
figures are given:

* ``stored_bytes``: everything the repository needs (what a copy of it elsewhere would take).
* ``unique_bytes``: the part no other repository holds (what deleting it would free);
  ``shared_bytes`` is the rest.
* ``attributed_bytes``: each blob and manifest split evenly between the repositories holding
  it. These add up, over all repositories, to the referenced total; costs use them, so that the
  per-repository costs add up to the registry's.

A namespace (the first path component) counts each blob and manifest once however many of its
repositories hold it; its unique part is what no other namespace holds. Its attributed bytes and
activity are the sums over its repositories. A namespace with a storage quota shows its limit,
use and headroom as ``dockyard.registry.quotas`` counts them (the one definition the quota check
uses: blobs linked to the namespace count even before a manifest references them).

Cost per month = attributed GB x the storage price per GB-month + GB served in the last 30 days x
the egress price per GB, with 1 GB = 10^9 bytes (as storage and transfer are billed).

Every figure comes from a handful of set-based queries (grouped joins, no query per repository),
so a report over 10,000 blobs in 500 repositories is a few queries whatever the sizes. The
filters (``visible``, ``namespace``, ``repository``) narrow what is reported, never what "shared" means: a blob
is shared when any other repository holds it, listed or not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from dockyard.auth.access import namespace_of
from dockyard.meta.tables import (
    blobs,
    manifest_references,
    manifests,
    repositories,
    repository_blobs,
    repository_manifests,
    tags,
    usage_daily,
)
from dockyard.meta.tables import quotas as quota_table
from dockyard.registry import quotas
from dockyard.registry.usage import COUNTERS

BYTES_PER_GB = 10**9
COST_WINDOW_DAYS = 30  # egress in the cost estimate: the bytes served in the last 30 days
MAX_DAYS = 366


@dataclass(frozen=True, slots=True)
class Prices:
    storage_gb_month: float
    egress_gb: float

    def cost(self, attributed_bytes: float, served_bytes_30d: int) -> dict[str, float]:
        storage = attributed_bytes / BYTES_PER_GB * self.storage_gb_month
        egress = served_bytes_30d / BYTES_PER_GB * self.egress_gb
        return {"storage": storage, "egress": egress, "total": storage + egress}

    def as_json(self) -> dict[str, Any]:
        return {"storage_gb_month": self.storage_gb_month, "egress_gb": self.egress_gb, "bytes_per_gb": BYTES_PER_GB}


@dataclass(slots=True)
class Activity:
    """Pushes, pulls and bytes within the report's window, and bytes served in the cost window."""

    pushes: int = 0
    pulls: int = 0
    bytes_served: int = 0
    bytes_received: int = 0
    bytes_served_30d: int = 0

    def add(self, other: Activity) -> None:
        for name in (*COUNTERS, "bytes_served_30d"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_json(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in (*COUNTERS, "bytes_served_30d")}


@dataclass(slots=True)
class Footprint:
    """Bytes held, split into unique and shared, and how many blobs and manifests."""

    stored_bytes: int = 0
    unique_bytes: int = 0
    attributed_bytes: float = 0.0
    blobs: int = 0
    manifests: int = 0

    def add(self, other: Footprint) -> None:
        self.stored_bytes += other.stored_bytes
        self.unique_bytes += other.unique_bytes
        self.attributed_bytes += other.attributed_bytes
        self.blobs += other.blobs
        self.manifests += other.manifests

    def as_json(self) -> dict[str, Any]:
        return {
            "stored_bytes": int(self.stored_bytes),
            "unique_bytes": int(self.unique_bytes),
            "shared_bytes": int(self.stored_bytes - self.unique_bytes),
            "attributed_bytes": round(self.attributed_bytes, 3),
            "blobs": int(self.blobs),
            "manifests": int(self.manifests),
        }


@dataclass(slots=True)
class RepositoryUsage:
    id: int
    name: str
    footprint: Footprint = field(default_factory=Footprint)
    tags: int = 0
    activity: Activity = field(default_factory=Activity)
    last_push_at: float | None = None
    last_pull_at: float | None = None
    daily: list[dict[str, Any]] | None = None  # per-day counts, for one repository's report

    @property
    def namespace(self) -> str:
        return namespace_of(self.name)

    def as_json(self, prices: Prices) -> dict[str, Any]:
        body = {
            "name": self.name,
            "namespace": self.namespace,
            **self.footprint.as_json(),
            "tags": self.tags,
            **self.activity.as_json(),
            "last_push_at": timestamp(self.last_push_at),
            "last_pull_at": timestamp(self.last_pull_at),
            "cost": prices.cost(self.footprint.attributed_bytes, self.activity.bytes_served_30d),
        }
        if self.daily is not None:
            body["daily"] = self.daily
        return body


@dataclass(slots=True)
class NamespaceUsage:
    name: str
    repositories: int = 0
    complete: bool = True  # False when the caller sees only some of its repositories
    footprint: Footprint = field(default_factory=Footprint)
    tags: int = 0
    activity: Activity = field(default_factory=Activity)
    last_push_at: float | None = None
    last_pull_at: float | None = None
    quota: quotas.QuotaStatus | None = None

    def as_json(self, prices: Prices) -> dict[str, Any]:
        quota = None
        if self.quota is not None and self.quota.limit_bytes is not None and self.complete:
            q = self.quota
            quota = {"limit_bytes": q.limit_bytes, "used_bytes": q.used_bytes, "headroom_bytes": q.headroom_bytes}
        return {
            "name": self.name,
            "repositories": self.repositories,
            "complete": self.complete,
            **self.footprint.as_json(),
            "tags": self.tags,
            **self.activity.as_json(),
            "last_push_at": timestamp(self.last_push_at),
            "last_pull_at": timestamp(self.last_pull_at),
            "cost": prices.cost(self.footprint.attributed_bytes, self.activity.bytes_served_30d),
            "quota": quota,
        }


@dataclass(slots=True)
class Totals:
    """The whole registry, physically: every stored blob and manifest, referenced or not."""

    repositories: int = 0
    namespaces: int = 0
    blobs: int = 0
    blob_bytes: int = 0
    manifests: int = 0
    manifest_bytes: int = 0
    referenced_bytes: int = 0
    tags: int = 0
    activity: Activity = field(default_factory=Activity)

    def as_json(self, prices: Prices) -> dict[str, Any]:
        stored = self.blob_bytes + self.manifest_bytes
        return {
            "repositories": self.repositories,
            "namespaces": self.namespaces,
            "blobs": self.blobs,
            "manifests": self.manifests,
            "tags": self.tags,
            "stored_bytes": stored,
            "blob_bytes": self.blob_bytes,
            "manifest_bytes": self.manifest_bytes,
            "referenced_bytes": self.referenced_bytes,
            "unreferenced_bytes": stored - self.referenced_bytes,
            **self.activity.as_json(),
            # The bill is for what is on disk, unreferenced bytes included.
            "cost": prices.cost(stored, self.activity.bytes_served_30d),
        }


@dataclass(slots=True)
class Report:
    days: int
    since: str
    until: str
    generated_at: float
    prices: Prices
    repositories: list[RepositoryUsage]
    namespaces: list[NamespaceUsage]
    totals: Totals | None

    def as_json(self) -> dict[str, Any]:
        """The shape of ``dockyard usage --json`` and of ``GET /api/v1/usage``."""
        return {
            "generated_at": timestamp(self.generated_at),
            "days": self.days,
            "since": self.since,
            "until": self.until,
            "prices": self.prices.as_json(),
            "repositories": [r.as_json(self.prices) for r in self.repositories],
            "namespaces": [n.as_json(self.prices) for n in self.namespaces],
            "totals": self.totals.as_json(self.prices) if self.totals is not None else None,
        }


def timestamp(value: float | None) -> str | None:
    """RFC 3339 in UTC, to the second, as the admin API writes times."""
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# -- the report ------------------------------------------------------------------------------------


def report(
    conn: sa.Connection,
    prices: Prices,
    *,
    days: int = 30,
    now: float,
    visible: Callable[[list[str]], list[str]] | None = None,
    namespace: str | None = None,
    repository: str | None = None,
    totals: bool = True,
    daily: bool = False,
    holdings: Holdings | None = None,
) -> Report:
    """Figures for the repositories ``visible`` keeps (all when None), narrowed to one
    ``namespace`` or one ``repository``; namespaces are summarised over those repositories only.
    ``daily`` adds each repository's per-day counts over the window (for charts); ``holdings``
    (from a ``HoldingsCache``) saves reading who holds what again."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be from 1 to {MAX_DAYS}")
    today = datetime.fromtimestamp(now, UTC).date()
    since = (today - timedelta(days=days - 1)).isoformat()
    since_30 = (today - timedelta(days=COST_WINDOW_DAYS - 1)).isoformat()

    every = {row.id: row for row in conn.execute(sa.select(repositories.c.id, repositories.c.name))}
    names = sorted(row.name for row in every.values())
    if repository is not None:
        names = [n for n in names if n == repository]
    if namespace is not None:
        names = [n for n in names if namespace_of(n) == namespace]
    if visible is not None:
        names = visible(names)
    wanted = set(names)
    chosen = {repo_id for repo_id, row in every.items() if row.name in wanted}
    ids = None if len(chosen) == len(every) else chosen  # None: no filter needed
    repos = _repositories(conn, chosen)

    storage = holdings if holdings is not None else Holdings.load(conn)
    for repo_id, footprint in storage.footprints(repos).items():
        repos[repo_id].footprint = footprint
    tag_counts = _tag_counts(conn, ids)
    for repo_id, count in tag_counts.items():
        if repo_id in repos:
            repos[repo_id].tags = count
    activities = _activity(conn, ids, since, since_30)
    for repo_id, activity in activities.items():
        if repo_id in repos:
            repos[repo_id].activity = activity
    if daily:
        series = _daily(conn, ids, since)
        for repo_id, repo in repos.items():
            repo.daily = _fill_days(series.get(repo_id, {}), since, today)

    listed = sorted(repos.values(), key=lambda r: r.name)
    namespaces = _namespaces(conn, listed, storage, every)
    whole = None
    if totals:
        # Unfiltered, the per-repository figures already cover every row (tags and usage go
        # with their repository): summing them saves scanning both tables again.
        whole = _totals(conn, storage, since, since_30, None if ids is not None else (tag_counts, activities))
        whole.repositories = len(every)
        whole.namespaces = len({namespace_of(row.name) for row in every.values()})
    return Report(days, since, today.isoformat(), now, prices, listed, namespaces, whole)


def _in(column: sa.ColumnElement[Any], ids: Collection[int] | None) -> sa.ColumnElement[bool]:
    """``column IN ids`` (TRUE without a filter). The ids are integers of our own, rendered into
    the SQL rather than bound one parameter each, so no list is too long for the database's
    limit on parameters (SQLite's 32766, PostgreSQL's 65535)."""
    if ids is None:
        return sa.true()
    return column.in_(sa.bindparam("ids", sorted(ids), expanding=True, literal_execute=True, unique=True))


def _repositories(conn: sa.Connection, chosen: set[int]) -> dict[int, RepositoryUsage]:
    q = sa.select(repositories.c.id, repositories.c.name, repositories.c.last_push_at, repositories.c.last_pull_at)
    return {
        row.id: RepositoryUsage(row.id, row.name, last_push_at=row.last_push_at, last_pull_at=row.last_pull_at)
        for row in conn.execute(q)
        if row.id in chosen
    }


_Held = tuple[set[str], set[str]]  # (blob digests, manifest digests)
_Holders = tuple[dict[str, int], dict[str, int]]  # digest -> how many owners hold it, per kind


class Holdings:
    """Who holds what, with every repository's and namespace's shares worked out once.

    The shares (unique, attributed, per namespace) need, for each digest, how many repositories
    and namespaces hold it. SQL grouping of tens of thousands of long digest strings, once per
    figure, cost SQLite about a second for 1,000 repositories; one pass in Python over two flat
    queries costs a fraction of that, and ``HoldingsCache`` reuses the result until something
    is pushed or deleted.
    """

    def __init__(self, sizes: dict[str, int], held: dict[int, _Held], names: dict[int, str]) -> None:
        self.sizes = sizes
        self.held = held
        self.names = names  # every repository at load time, by id
        repo_holders = _holders(held)
        self.repositories = {i: _footprint(sizes, h, repo_holders) for i, h in held.items()}
        self.namespace_of = {i: namespace_of(names[i]) for i in held if i in names}
        self.namespace_held: dict[str, _Held] = {}
        for repo_id, space in self.namespace_of.items():
            _merge(self.namespace_held.setdefault(space, (set(), set())), held[repo_id])
        self.namespace_holders = _holders(self.namespace_held)
        self.namespace_members: dict[str, set[int]] = {}
        for repo_id, space in self.namespace_of.items():
            self.namespace_members.setdefault(space, set()).add(repo_id)
        self._whole_namespaces: dict[str, Footprint] = {}
        self.referenced_blobs: set[str] = set().union(*(h[0] for h in held.values()))
        # Figures read on first use and kept with the holdings (same lifetime, same staleness).
        self._unused: dict[frozenset[int], dict[str, int]] = {}
        self._physical: tuple[int, int, int, int] | None = None

    @classmethod
    def load(cls, conn: sa.Connection) -> Holdings:
        sizes: dict[str, int] = {}
        held: dict[int, _Held] = {}
        blob_rows = conn.execute(
            sa.select(repository_manifests.c.repository_id, manifest_references.c.target_digest, blobs.c.size)
            .select_from(
                repository_manifests.join(
                    manifest_references, manifest_references.c.manifest_digest == repository_manifests.c.digest
                ).join(blobs, blobs.c.digest == manifest_references.c.target_digest)
            )
            .where(manifest_references.c.kind == "blob")
        )
        for repo_id, digest, size in blob_rows:
            sizes[digest] = size
            held.setdefault(repo_id, (set(), set()))[0].add(digest)
        manifest_rows = conn.execute(
            sa.select(repository_manifests.c.repository_id, manifests.c.digest, manifests.c.size).select_from(
                repository_manifests.join(manifests)
            )
        )
        for repo_id, digest, size in manifest_rows:
            sizes[digest] = size
            held.setdefault(repo_id, (set(), set()))[1].add(digest)
        names = dict(conn.execute(sa.select(repositories.c.id, repositories.c.name)).all())
        return cls(sizes, held, names)

    def footprints(self, ids: Collection[int]) -> dict[int, Footprint]:
        return {i: self.repositories[i] for i in ids if i in self.repositories}

    def namespaces(self, listed: Collection[int]) -> dict[str, Footprint]:
        """Distinct digests per namespace over the ``listed`` repositories; unique means held by
        no other namespace at all (listed or not). Attributed bytes are left to the caller (the
        sum of its repositories' shares)."""
        chosen: dict[str, set[int]] = {}
        for repo_id in listed:
            space = self.namespace_of.get(repo_id)
            if space is not None:
                chosen.setdefault(space, set()).add(repo_id)
        out = {}
        for space, members in chosen.items():
            if members == self.namespace_members[space]:  # the whole namespace: computed once
                if space not in self._whole_namespaces:
                    whole = _footprint(self.sizes, self.namespace_held[space], self.namespace_holders)
                    self._whole_namespaces[space] = whole
                found = self._whole_namespaces[space]
            else:
                held: _Held = (set(), set())
                for repo_id in members:
                    _merge(held, self.held[repo_id])
                found = _footprint(self.sizes, held, self.namespace_holders)
            out[space] = Footprint(found.stored_bytes, found.unique_bytes, 0.0, found.blobs, found.manifests)
        return out

    def namespace_bytes(self, namespace: str) -> int:
        """Bytes of the distinct blobs the namespace's manifests reference, and of the manifests."""
        blob_digests, manifest_digests = self.namespace_held.get(namespace, (set(), set()))
        return sum(self.sizes[d] for d in blob_digests) + sum(self.sizes[d] for d in manifest_digests)

    def unused_bytes(self, conn: sa.Connection, ids: Collection[int]) -> dict[str, int]:
        """Per namespace of the repositories ``ids``: the bytes of distinct blobs linked there that
        no manifest of any repository references (uploaded, not used yet). Remembered per set of
        repositories: reading every link of twenty namespaces costs tens of milliseconds, and
        the usage page and the quota list ask for the same set each time."""
        if not ids:
            return {}
        key = frozenset(ids)
        if key not in self._unused:
            self._unused[key] = self._read_unused(conn, key)
        return self._unused[key]

    def _read_unused(self, conn: sa.Connection, ids: Collection[int]) -> dict[str, int]:
        used = self.referenced_blobs
        links = sa.select(repository_blobs.c.repository_id, repository_blobs.c.digest).where(
            _in(repository_blobs.c.repository_id, ids)
        )
        unused = [(repo_id, digest) for repo_id, digest in conn.execute(links) if digest not in used]
        sizes: dict[str, int] = {}
        if unused:
            found = sa.select(blobs.c.digest, blobs.c.size).where(blobs.c.digest.in_({d for _, d in unused}))
            sizes = {digest: size for digest, size in conn.execute(found)}
        seen: dict[str, dict[str, int]] = {}
        for repo_id, digest in unused:
            seen.setdefault(namespace_of(self.names[repo_id]), {})[digest] = sizes.get(digest, 0)
        return {space: sum(digests.values()) for space, digests in seen.items()}

    def referenced_bytes(self) -> int:
        """Bytes of the distinct blobs and manifests some repository holds."""
        return sum(self.sizes.values())

    def physical(self, conn: sa.Connection) -> tuple[int, int, int, int]:
        """(blobs, blob bytes, manifests, manifest bytes) stored, referenced or not: two scans
        of the largest tables, done once per holdings."""
        if self._physical is None:
            blob_count, blob_bytes = _count_and_bytes(conn, sa.select(blobs.c.size))
            manifest_count, manifest_bytes = _count_and_bytes(conn, sa.select(manifests.c.size))
            self._physical = (blob_count, blob_bytes, manifest_count, manifest_bytes)
        return self._physical

    def quota_statuses(
        self, conn: sa.Connection, namespaces: Collection[str] | None = None
    ) -> list[quotas.QuotaStatus]:
        """Every quota (of ``namespaces`` when given) with its use as the quota check counts it
        (``quotas.namespace_usage``), from the holdings: one query for all of them rather than
        three per quota."""
        q = sa.select(quota_table).order_by(quota_table.c.namespace)
        if namespaces is not None:
            q = q.where(quota_table.c.namespace.in_(sorted(namespaces)))
        limited = conn.execute(q).all()
        if not limited:
            return []
        spaces = {row.namespace for row in limited}
        unused = self.unused_bytes(conn, [i for i, name in self.names.items() if namespace_of(name) in spaces])
        return [
            quotas.QuotaStatus(
                row.namespace,
                row.limit_bytes,
                self.namespace_bytes(row.namespace) + unused.get(row.namespace, 0),
                row.updated_at,
            )
            for row in limited
        ]


class HoldingsCache:
    """One ``Holdings`` reused while ``version`` (the registry's write generation, bumped by every
    push, delete, retention and collection in this process) is unchanged, for at most ``ttl``
    seconds: changes made by other processes (the CLI, replicas) show within that time."""

    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._entry: tuple[int, float, Holdings] | None = None

    def get(self, conn: sa.Connection, version: int) -> Holdings:
        entry = self._entry
        if entry is not None and entry[0] == version and time.monotonic() - entry[1] < self.ttl:
            return entry[2]
        holdings = Holdings.load(conn)
        self._entry = (version, time.monotonic(), holdings)
        return holdings


def _merge(into: _Held, other: _Held) -> None:
    into[0].update(other[0])
    into[1].update(other[1])


def _holders(owners: dict[Any, _Held]) -> _Holders:
    """For blobs and for manifests: how many of ``owners`` hold each digest."""
    count: _Holders = ({}, {})
    for held in owners.values():
        for kind in (0, 1):
            seen = count[kind]
            for digest in held[kind]:
                seen[digest] = seen.get(digest, 0) + 1
    return count


def _footprint(sizes: dict[str, int], held: _Held, holders: _Holders) -> Footprint:
    f = Footprint(blobs=len(held[0]), manifests=len(held[1]))
    for kind in (0, 1):
        counts = holders[kind]
        for digest in held[kind]:
            size, n = sizes[digest], counts[digest]
            f.stored_bytes += size
            f.attributed_bytes += size / n
            if n == 1:
                f.unique_bytes += size
    return f


def _tag_counts(conn: sa.Connection, ids: Collection[int] | None) -> dict[int, int]:
    q = (
        sa.select(tags.c.repository_id, sa.func.count())
        .where(_in(tags.c.repository_id, ids))
        .group_by(tags.c.repository_id)
    )
    return {repo_id: int(count) for repo_id, count in conn.execute(q)}


def _window_sums(since: str, since_30: str) -> list[sa.ColumnElement[Any]]:
    in_window = usage_daily.c.day >= since
    sums = [
        sa.func.coalesce(sa.func.sum(sa.case((in_window, usage_daily.c[name]), else_=0)), 0).label(name)
        for name in COUNTERS
    ]
    served_30 = sa.case((usage_daily.c.day >= since_30, usage_daily.c.bytes_served), else_=0)
    return [*sums, sa.func.coalesce(sa.func.sum(served_30), 0).label("bytes_served_30d")]


def _activity_of(row: Any) -> Activity:
    return Activity(*(int(getattr(row, name)) for name in (*COUNTERS, "bytes_served_30d")))


def _activity(conn: sa.Connection, ids: Collection[int] | None, since: str, since_30: str) -> dict[int, Activity]:
    q = (
        sa.select(usage_daily.c.repository_id, *_window_sums(since, since_30))
        .where(usage_daily.c.day >= min(since, since_30), _in(usage_daily.c.repository_id, ids))
        .group_by(usage_daily.c.repository_id)
    )
    return {row.repository_id: _activity_of(row) for row in conn.execute(q)}


def _daily(conn: sa.Connection, ids: Collection[int] | None, since: str) -> dict[int, dict[str, dict[str, int]]]:
    q = sa.select(usage_daily).where(usage_daily.c.day >= since, _in(usage_daily.c.repository_id, ids))
    series: dict[int, dict[str, dict[str, int]]] = {}
    for row in conn.execute(q):
        series.setdefault(row.repository_id, {})[row.day] = {name: int(getattr(row, name)) for name in COUNTERS}
    return series


def _fill_days(found: dict[str, dict[str, int]], since: str, today: Any) -> list[dict[str, Any]]:
    """Every day of the window, oldest first, zeros where nothing happened (what a chart wants)."""
    first = datetime.fromisoformat(since).date()
    out = []
    for offset in range((today - first).days + 1):
        day = (first + timedelta(days=offset)).isoformat()
        out.append({"day": day, **found.get(day, dict.fromkeys(COUNTERS, 0))})
    return out


def daily_totals(
    conn: sa.Connection, repository_ids: Collection[int] | None, since: str, until: str
) -> list[dict[str, Any]]:
    """The counters summed over ``repository_ids`` (every repository when None) for each day from
    ``since`` to ``until`` (a report's window), zeros where nothing happened: one grouped query,
    for a chart over many repositories (``report(daily=True)`` builds a series per repository,
    which for a thousand of them costs more than the rest of the page)."""
    sums = [sa.func.coalesce(sa.func.sum(usage_daily.c[name]), 0).label(name) for name in COUNTERS]
    q = (
        sa.select(usage_daily.c.day, *sums)
        .where(usage_daily.c.day >= since, usage_daily.c.day <= until, _in(usage_daily.c.repository_id, repository_ids))
        .group_by(usage_daily.c.day)
    )
    found = {row.day: {name: int(getattr(row, name)) for name in COUNTERS} for row in conn.execute(q)}
    return _fill_days(found, since, datetime.fromisoformat(until).date())


# -- namespaces ------------------------------------------------------------------------------------


def _namespaces(
    conn: sa.Connection, listed: list[RepositoryUsage], storage: Holdings, every: dict[int, Any]
) -> list[NamespaceUsage]:
    if not listed:
        return []
    spaces: dict[str, NamespaceUsage] = {}
    for repo in listed:
        space = spaces.setdefault(repo.namespace, NamespaceUsage(repo.namespace))
        space.repositories += 1
        space.footprint.attributed_bytes += repo.footprint.attributed_bytes
        space.tags += repo.tags
        space.activity.add(repo.activity)
        space.last_push_at = _latest(space.last_push_at, repo.last_push_at)
        space.last_pull_at = _latest(space.last_pull_at, repo.last_pull_at)
    held: dict[str, int] = {}
    for row in every.values():
        held[namespace_of(row.name)] = held.get(namespace_of(row.name), 0) + 1
    for space in spaces.values():
        space.complete = space.repositories == held.get(space.name, 0)
    for name, footprint in storage.namespaces([repo.id for repo in listed]).items():
        footprint.attributed_bytes = spaces[name].footprint.attributed_bytes
        spaces[name].footprint = footprint
    for status in storage.quota_statuses(conn, spaces):
        spaces[status.namespace].quota = status
    return sorted(spaces.values(), key=lambda s: s.name)


def _latest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


# -- the registry ----------------------------------------------------------------------------------


def _totals(
    conn: sa.Connection,
    storage: Holdings,
    since: str,
    since_30: str,
    every_repository: tuple[dict[int, int], dict[int, Activity]] | None,
) -> Totals:
    """The registry's totals; ``every_repository`` (tag counts and activity of all repositories,
    when the report already read them unfiltered) replaces the two whole-table queries."""
    t = Totals()
    t.blobs, t.blob_bytes, t.manifests, t.manifest_bytes = storage.physical(conn)
    t.referenced_bytes = storage.referenced_bytes()
    if every_repository is not None:
        tag_counts, activities = every_repository
        t.tags = sum(tag_counts.values())
        for activity in activities.values():
            t.activity.add(activity)
        return t
    t.tags = int(conn.execute(sa.select(sa.func.count()).select_from(tags)).scalar_one())
    row = conn.execute(sa.select(*_window_sums(since, since_30)).where(usage_daily.c.day >= min(since, since_30))).one()
    t.activity = _activity_of(row)
    return t


def _count_and_bytes(conn: sa.Connection, sizes: sa.Select) -> tuple[int, int]:
    sub = sizes.subquery()
    count, total = conn.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(sub.c.size), 0))).one()
    return int(count), int(total)
