"""Storage quotas per namespace, and how much of one a namespace uses.

Usage is the size of the DISTINCT manifests linked to the namespace's repositories and of the
distinct blobs linked there that either a manifest of the namespace references or no manifest
references at all (uploaded, not yet used: they would otherwise be free storage). A layer shared
by ten repositories of ``acme`` counts once; a layer that ``acme`` stopped using but another
namespace still references no longer counts here, so deleting images frees quota at once. Blob
bytes held by an unfinished upload session do not count; the check runs when the upload commits.

The check itself (``enforcement.PolicyHooks``) runs inside the transaction that makes a blob or a
manifest visible. On SQLite that transaction is alone (one writer), so two pushes cannot both
squeeze under the limit; on PostgreSQL ``lock_quota`` takes the quota row FOR UPDATE for the
same effect.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from dockyard.meta.tables import (
    blobs,
    manifest_references,
    manifests,
    quotas,
    repositories,
    repository_blobs,
    repository_manifests,
)
from dockyard.registry.namespaces import in_namespace


@dataclass(frozen=True, slots=True)
class QuotaStatus:
    namespace: str
    limit_bytes: int | None  # None: no quota
    used_bytes: int
    updated_at: float | None

    @property
    def headroom_bytes(self) -> int | None:
        """What may still be pushed; 0 when a lowered quota is already exceeded."""
        return None if self.limit_bytes is None else max(0, self.limit_bytes - self.used_bytes)


def _linked(links: sa.Table, namespace: str) -> sa.Select:
    return (
        sa.select(links.c.digest)
        .select_from(links.join(repositories, repositories.c.id == links.c.repository_id))
        .where(in_namespace(repositories.c.name, namespace))
    )


def namespace_usage(conn: sa.Connection, namespace: str) -> int:
    """Bytes the namespace is charged for (see the module docstring)."""
    used_here = sa.select(manifest_references.c.target_digest).where(
        manifest_references.c.manifest_digest.in_(_linked(repository_manifests, namespace))
    )
    unused_anywhere = ~_used_by_some_repository(blobs.c.digest)
    blob_bytes = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(blobs.c.size), 0)).where(
            blobs.c.digest.in_(_linked(repository_blobs, namespace)),
            sa.or_(blobs.c.digest.in_(used_here), unused_anywhere),
        )
    ).scalar_one()
    manifest_bytes = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(manifests.c.size), 0)).where(
            manifests.c.digest.in_(_linked(repository_manifests, namespace))
        )
    ).scalar_one()
    return int(blob_bytes) + int(manifest_bytes)


def _used_by_some_repository(digest: sa.ColumnElement[str] | str) -> sa.Exists:
    """A manifest that some repository holds references the blob (a deleted manifest, kept until
    garbage collection, does not count: its blobs are unused, and charged where they are linked)."""
    return (
        sa.exists()
        .select_from(
            manifest_references.join(
                repository_manifests, repository_manifests.c.digest == manifest_references.c.manifest_digest
            )
        )
        .where(manifest_references.c.target_digest == digest)
    )


def referenced(conn: sa.Connection, digest: str) -> bool:
    """Whether a manifest of some repository references the blob."""
    return bool(conn.execute(sa.select(_used_by_some_repository(digest))).scalar())


def blob_in_namespace(conn: sa.Connection, namespace: str, digest: str) -> bool:
    q = _linked(repository_blobs, namespace).where(repository_blobs.c.digest == digest).limit(1)
    return conn.execute(q).first() is not None


def manifest_in_namespace(conn: sa.Connection, namespace: str, digest: str) -> bool:
    q = _linked(repository_manifests, namespace).where(repository_manifests.c.digest == digest).limit(1)
    return conn.execute(q).first() is not None


def quota_of(conn: sa.Connection, namespace: str) -> int | None:
    """The namespace's limit in bytes, or None when it has no quota."""
    return conn.execute(sa.select(quotas.c.limit_bytes).where(quotas.c.namespace == namespace)).scalar()


def lock_quota(conn: sa.Connection, namespace: str) -> int | None:
    """``quota_of``, holding the row until the transaction ends where the database can (PostgreSQL):
    concurrent pushes into one namespace then check their usage one after the other."""
    q = sa.select(quotas.c.limit_bytes).where(quotas.c.namespace == namespace)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    return conn.execute(q).scalar()


def quota_status(conn: sa.Connection, namespace: str) -> QuotaStatus:
    row = conn.execute(sa.select(quotas).where(quotas.c.namespace == namespace)).first()
    limit, updated = (row.limit_bytes, row.updated_at) if row is not None else (None, None)
    return QuotaStatus(namespace, limit, namespace_usage(conn, namespace), updated)


def set_quota(conn: sa.Connection, namespace: str, limit_bytes: int) -> QuotaStatus:
    """Create or change a quota. A limit below current usage is allowed: it stops further growth."""
    now = time.time()
    if conn.execute(sa.select(quotas.c.namespace).where(quotas.c.namespace == namespace)).first() is None:
        conn.execute(sa.insert(quotas).values(namespace=namespace, limit_bytes=limit_bytes, updated_at=now))
    else:
        conn.execute(
            sa.update(quotas).where(quotas.c.namespace == namespace).values(limit_bytes=limit_bytes, updated_at=now)
        )
    return QuotaStatus(namespace, limit_bytes, namespace_usage(conn, namespace), now)


def delete_quota(conn: sa.Connection, namespace: str) -> bool:
    return conn.execute(sa.delete(quotas).where(quotas.c.namespace == namespace)).rowcount > 0
