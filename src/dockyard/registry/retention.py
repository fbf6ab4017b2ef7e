"""Retention: deleting the tags and unlinking the manifests that the policies say may go.

``plan_retention`` reads the policies and the repositories and says what would go, with a reason
for each item (a dry run shows exactly this). ``apply_retention`` plans, then applies the plan one
repository per transaction, deleting an item only if planning the repository again inside that
transaction still selects it, unchanged: a tag pushed again meanwhile (another digest, a newer
``updated_at``), a manifest tagged or pulled meanwhile, or a policy loosened meanwhile all keep what
they protect. Deletions go through the registry's own queries (``store.delete_tag``,
``store.delete_manifest``) and hooks: ``before_untag`` may refuse (an immutable tag: skipped and
reported), ``changed`` sees a "delete" by actor ``retention`` (webhooks). Each deletion is in the
audit log too.

Blobs are never deleted here: an unlinked manifest and the layers only it used are freed by the
garbage collector, which runs after retention on the server's schedule.

See ``policies`` for what the rules mean.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

import sqlalchemy as sa

from dockyard.auth import audit as audit_log
from dockyard.meta import store
from dockyard.meta.db import Database
from dockyard.meta.tables import manifest_references, manifests, repository_manifests, tags
from dockyard.registry import jobs
from dockyard.registry.errors import RegistryError
from dockyard.registry.hooks import Change, Hooks
from dockyard.registry.namespaces import namespace_of, repositories_of
from dockyard.registry.policies import (
    ImmutabilityRules,
    Policy,
    RetentionRules,
    effective_retention,
    immutable_patterns,
    list_policies,
)
from dockyard.registry.units import format_duration

log = logging.getLogger("dockyard.retention")
ACTOR = "retention"
JOB = "retention"
# Items listed per repository in the stored run log (the counts are always exact).
STORED_ITEMS = 200


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class TagItem:
    tag: str
    digest: str
    updated_at: float
    reason: str

    @property
    def key(self) -> tuple[str, str, float]:
        return (self.tag, self.digest, self.updated_at)

    def as_json(self) -> dict[str, Any]:
        return {"tag": self.tag, "digest": self.digest, "pushed_at": iso(self.updated_at), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ManifestItem:
    digest: str
    created_at: float
    reason: str

    @property
    def key(self) -> tuple[str, float]:
        return (self.digest, self.created_at)

    def as_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "linked_at": iso(self.created_at), "reason": self.reason}


@dataclass(slots=True)
class RepositoryPlan:
    repository: str
    policy: str  # the target of the policy that applies: "acme/*" or "acme/app"
    tags: list[TagItem] = field(default_factory=list)
    manifests: list[ManifestItem] = field(default_factory=list)
    # What the rules would remove but may not (immutable), or what changed since planning.
    skipped: list[dict[str, str]] = field(default_factory=list)

    def as_json(self, limit: int | None = None) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "policy": self.policy,
            "tags": [t.as_json() for t in self.tags[:limit]],
            "manifests": [m.as_json() for m in self.manifests[:limit]],
            "skipped": self.skipped[:limit],
            "tag_count": len(self.tags),
            "manifest_count": len(self.manifests),
            "skipped_count": len(self.skipped),
        }


@dataclass(slots=True)
class Plan:
    at: float
    repositories: list[RepositoryPlan]

    def report(self, dry_run: bool, limit: int | None = None) -> dict[str, Any]:
        return {
            "dry_run": dry_run,
            "at": iso(self.at),
            "tags": sum(len(r.tags) for r in self.repositories),
            "manifests": sum(len(r.manifests) for r in self.repositories),
            "skipped": sum(len(r.skipped) for r in self.repositories),
            "repositories": [r.as_json(limit) for r in self.repositories],
        }


# -- planning ------------------------------------------------------------------------------


def _targets(conn: sa.Connection, namespace: str | None, repository: str | None) -> list[tuple[int, str, Policy]]:
    """(id, name, policy) of every existing repository a retention policy governs, in scope."""
    if repository is not None:
        repo_id = store.repository_id(conn, repository)
        policy = effective_retention(conn, repository) if repo_id is not None else None
        return [(repo_id, repository, policy)] if repo_id is not None and policy is not None else []
    found = list_policies(conn, "retention", namespace=namespace)
    own = {p.repository: p for p in found if p.repository is not None}
    governed: dict[str, tuple[int, Policy]] = {}
    for policy in found:
        if policy.namespace is not None:
            for repo_id, name in repositories_of(conn, policy.namespace):
                governed[name] = (repo_id, own.get(name, policy))
    for name, policy in own.items():
        if name not in governed and (namespace is None or namespace_of(name) == namespace):
            repo_id = store.repository_id(conn, name)
            if repo_id is not None:
                governed[name] = (repo_id, policy)
    return [(repo_id, name, policy) for name, (repo_id, policy) in sorted(governed.items())]


def _tag_reason(rules: RetentionRules) -> str:
    parts = []
    if rules.keep_last is not None:
        parts.append(f"not among the newest {rules.keep_last}")
    if rules.keep_tags:
        parts.append(f"matches none of {', '.join(rules.keep_tags)}")
    if rules.keep_pulled_within is not None:
        parts.append(f"not pulled within {format_duration(rules.keep_pulled_within)}")
    return "; ".join(parts)


def plan_repository(
    conn: sa.Connection,
    repo_id: int,
    name: str,
    policy: Policy,
    immutable: ImmutabilityRules | None,
    now: float,
    *,
    tag_rules: bool = True,
) -> RepositoryPlan:
    """What ``policy`` removes from one repository as it is now. With ``tag_rules`` False, only
    untagged manifests (given the tags as they are): the second step of applying a plan."""
    rules = policy.rules
    assert isinstance(rules, RetentionRules)
    plan = RepositoryPlan(name, policy.target)
    tag_rows = conn.execute(
        sa.select(tags.c.name, tags.c.digest, tags.c.updated_at).where(tags.c.repository_id == repo_id)
    ).all()
    linked = conn.execute(
        sa.select(
            repository_manifests.c.digest,
            repository_manifests.c.created_at,
            repository_manifests.c.last_pulled_at,
            manifests.c.subject,
        )
        .select_from(repository_manifests.join(manifests))
        .where(repository_manifests.c.repository_id == repo_id)
    ).all()
    pulled_at = {m.digest: m.last_pulled_at for m in linked}
    pulled_since = now - rules.keep_pulled_within if rules.keep_pulled_within is not None else None

    def pulled(digest: str) -> bool:
        at = pulled_at.get(digest)
        return pulled_since is not None and at is not None and at >= pulled_since

    going: set[str] = set()
    if tag_rules and rules.touches_tags:
        newest = sorted(tag_rows, key=lambda t: (-t.updated_at, t.name))[: rules.keep_last or 0]
        kept = {t.name for t in newest}
        reason = _tag_reason(rules)
        for t in sorted(tag_rows, key=lambda t: t.name):
            if t.name in kept or any(fnmatchcase(t.name, p) for p in rules.keep_tags) or pulled(t.digest):
                continue
            rule = immutable.match(t.name) if immutable is not None else None
            if rule is not None:
                plan.skipped.append({"tag": t.name, "digest": t.digest, "reason": f"immutable (rule {rule!r})"})
                continue
            plan.tags.append(TagItem(t.name, t.digest, t.updated_at, reason))
            going.add(t.name)

    if rules.untagged_older_than is not None:
        tagged = {t.digest for t in tag_rows if t.name not in going}
        cutoff = now - rules.untagged_older_than
        candidates = {
            m.digest: m for m in linked if m.digest not in tagged and m.created_at < cutoff and not pulled(m.digest)
        }
        # What survives keeps its index children and its referrers, and they keep theirs.
        protects: dict[str, list[str]] = defaultdict(list)
        for m in linked:
            if m.subject is not None:
                protects[m.subject].append(m.digest)
        for parent, child in conn.execute(
            sa.select(manifest_references.c.manifest_digest, manifest_references.c.target_digest)
            .select_from(
                manifest_references.join(
                    repository_manifests, repository_manifests.c.digest == manifest_references.c.manifest_digest
                )
            )
            .where(repository_manifests.c.repository_id == repo_id, manifest_references.c.kind == "manifest")
        ):
            protects[parent].append(child)
        stack = [m.digest for m in linked if m.digest not in candidates]
        while stack:
            for protected in protects.get(stack.pop(), ()):
                if candidates.pop(protected, None) is not None:
                    stack.append(protected)
        condition = f"older than {format_duration(rules.untagged_older_than)}"
        if rules.keep_pulled_within is not None:
            condition += f", not pulled within {format_duration(rules.keep_pulled_within)}"
        for m in sorted(candidates.values(), key=lambda m: (m.created_at, m.digest)):
            age = format_duration(max(0.0, now - m.created_at))
            plan.manifests.append(ManifestItem(m.digest, m.created_at, f"untagged, linked {age} ago ({condition})"))
    return plan


def plan_retention(
    conn: sa.Connection, now: float, namespace: str | None = None, repository: str | None = None
) -> Plan:
    """What the retention policies would remove now: every governed repository, or those of one
    namespace, or one repository. Repositories with nothing to remove are left out."""
    found = []
    for repo_id, name, policy in _targets(conn, namespace, repository):
        plan = plan_repository(conn, repo_id, name, policy, immutable_patterns(conn, name), now)
        if plan.tags or plan.manifests or plan.skipped:
            found.append(plan)
    return Plan(now, found)


# -- applying ------------------------------------------------------------------------------


def _record(conn: sa.Connection, hooks: Hooks, name: str, digest: str, tag: str | None, reason: str) -> None:
    now = time.time()
    hooks.changed(conn, Change("delete", name, digest, (tag,) if tag else (), actor=ACTOR, at=now))
    detail = f"retention policy: {reason}"
    audit_log.write(conn, audit_log.Event("delete", ACTOR, "local", name, tag or digest, detail=detail, at=now))


def apply_repository(conn: sa.Connection, hooks: Hooks, planned: RepositoryPlan) -> RepositoryPlan:
    """Apply one repository's plan in the caller's transaction; returns what was done."""
    name = planned.repository
    done = RepositoryPlan(name, planned.policy, skipped=list(planned.skipped))
    repo_id = store.repository_id(conn, name)
    policy = effective_retention(conn, name) if repo_id is not None else None
    if repo_id is None or policy is None:
        why = "the repository is gone" if repo_id is None else "the retention policy was removed"
        done.skipped += [{"tag": t.tag, "digest": t.digest, "reason": why} for t in planned.tags]
        done.skipped += [{"digest": m.digest, "reason": why} for m in planned.manifests]
        return done
    immutable = immutable_patterns(conn, name)
    now = time.time()

    still = {t.key for t in plan_repository(conn, repo_id, name, policy, immutable, now).tags}
    for item in planned.tags:
        if item.key not in still:
            done.skipped.append({"tag": item.tag, "digest": item.digest, "reason": "kept: changed since planned"})
            continue
        try:
            hooks.before_untag(conn, name, [item.tag])
        except RegistryError as refused:
            done.skipped.append({"tag": item.tag, "digest": item.digest, "reason": refused.message})
            continue
        if store.delete_tag(conn, name, item.tag):
            _record(conn, hooks, name, item.digest, item.tag, item.reason)
            done.tags.append(item)

    # Manifests as the tags now are: one whose tag deletion was refused above stays tagged.
    still_m = {m.key for m in plan_repository(conn, repo_id, name, policy, immutable, now, tag_rules=False).manifests}
    for item in planned.manifests:
        if item.key not in still_m:
            done.skipped.append({"digest": item.digest, "reason": "kept: changed since planned"})
            continue
        try:
            hooks.before_untag(conn, name, store.tags_of(conn, name, item.digest))
        except RegistryError as refused:
            done.skipped.append({"digest": item.digest, "reason": refused.message})
            continue
        if store.delete_manifest(conn, name, item.digest):
            _record(conn, hooks, name, item.digest, None, item.reason)
            done.manifests.append(item)
    return done


async def apply_plan(db: Database, hooks: Hooks, plan: Plan) -> Plan:
    """Apply ``plan`` one repository per transaction (pushes interleave between them)."""
    done = [await db.run(apply_repository, hooks, planned) for planned in plan.repositories]
    return Plan(plan.at, done)


async def apply_retention(
    db: Database,
    hooks: Hooks,
    dry_run: bool,
    *,
    trigger: str = "cli",
    namespace: str | None = None,
    repository: str | None = None,
) -> dict[str, Any]:
    """Plan and (unless ``dry_run``) apply retention, logged as a ``job_runs`` row. Returns the
    report: with ``dry_run`` what would go, otherwise what went and what was skipped and why."""
    run_id = await db.run(jobs.start_run, JOB, trigger, dry_run)
    try:
        plan = await db.read(plan_retention, time.time(), namespace, repository)
        if not dry_run:
            plan = await apply_plan(db, hooks, plan)
    except Exception as exc:
        await db.run(jobs.finish_run, run_id, {"error": f"{type(exc).__name__}: {exc}"})
        raise
    await db.run(jobs.finish_run, run_id, {**plan.report(dry_run, STORED_ITEMS), "job_id": run_id})
    return {**plan.report(dry_run), "job_id": run_id}


async def run_scheduled_retention(db: Database, hooks: Hooks) -> dict[str, Any]:
    """What the server's schedule runs before each garbage collection. A failure is logged (and
    recorded in its ``job_runs`` row) rather than raised, so the collection still runs."""
    owner = jobs.owner_id()
    if not await db.run(jobs.acquire, "retention", owner, 600.0):
        return {"skipped": "another process is applying retention"}
    try:
        report = await apply_retention(db, hooks, dry_run=False, trigger="schedule")
    except Exception as exc:
        log.exception("scheduled retention failed")
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        await db.run(jobs.release, "retention", owner)
    if report["tags"] or report["manifests"]:
        log.info("retention deleted %d tags and unlinked %d manifests", report["tags"], report["manifests"])
    return report


def recent_runs(conn: sa.Connection, limit: int = 20) -> list[dict[str, Any]]:
    return jobs.recent_runs(conn, JOB, limit)
