"""Queries for online garbage collection (orchestrated by ``dockyard.registry.gc``).

Each deleting query re-checks its conditions inside its own transaction, so a push that
references, re-uploads or checks for an item after the candidates were chosen always wins: the
item simply is not deleted this time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from dockyard.meta.tables import (
    blobs,
    manifest_references,
    manifests,
    repositories,
    repository_blobs,
    repository_manifests,
    uploads,
)

_referenced = sa.exists().where(manifest_references.c.target_digest == blobs.c.digest)
_linked_manifest = sa.exists().where(repository_manifests.c.digest == manifests.c.digest)


def _pushing_here(cutoff: float) -> sa.Exists:
    """The blob is linked to a repository where an upload was active since ``cutoff``: a push in
    progress there may have checked for it (HEAD) and be about to reference it."""
    return (
        sa.exists()
        .select_from(repository_blobs.join(repositories).join(uploads, uploads.c.repository == repositories.c.name))
        .where(repository_blobs.c.digest == blobs.c.digest, uploads.c.updated_at > cutoff)
    )


# -- upload sessions --------------------------------------------------------------------------


def abandoned_uploads(conn: sa.Connection, idle_before: float, limit: int) -> list[str]:
    q = sa.select(uploads.c.id).where(uploads.c.updated_at < idle_before).order_by(uploads.c.updated_at).limit(limit)
    return list(conn.execute(q).scalars())


def delete_abandoned_upload(conn: sa.Connection, upload_id: str, idle_before: float) -> bool:
    result = conn.execute(sa.delete(uploads).where(uploads.c.id == upload_id, uploads.c.updated_at < idle_before))
    return result.rowcount > 0


def upload_ids(conn: sa.Connection, ids: Iterable[str]) -> set[str]:
    wanted = list(ids)
    if not wanted:
        return set()
    return set(conn.execute(sa.select(uploads.c.id).where(uploads.c.id.in_(wanted))).scalars())


# -- manifests --------------------------------------------------------------------------------


def orphan_manifests(conn: sa.Connection, limit: int) -> list[sa.Row]:
    """Manifests no repository links any more (deleted by digest, or by retention)."""
    q = sa.select(manifests.c.digest, manifests.c.size).where(~_linked_manifest).limit(limit)
    return list(conn.execute(q))


def delete_orphan_manifests(conn: sa.Connection, digests: list[str]) -> int:
    gone = list(
        conn.execute(sa.select(manifests.c.digest).where(manifests.c.digest.in_(digests), ~_linked_manifest)).scalars()
    )
    if not gone:
        return 0
    conn.execute(sa.delete(manifest_references).where(manifest_references.c.manifest_digest.in_(gone)))
    conn.execute(sa.delete(manifests).where(manifests.c.digest.in_(gone)))
    return len(gone)


# -- blobs ------------------------------------------------------------------------------------


def mark(conn: sa.Connection, now: float) -> tuple[int, int]:
    """Start the clock on blobs no manifest references; stop it on referenced ones (a manifest
    PUT stops it too, but not for blobs referenced before the column existed)."""
    started = conn.execute(
        sa.update(blobs).where(blobs.c.unreferenced_since.is_(None), ~_referenced).values(unreferenced_since=now)
    ).rowcount
    stopped = conn.execute(
        sa.update(blobs).where(blobs.c.unreferenced_since.is_not(None), _referenced).values(unreferenced_since=None)
    ).rowcount
    return started, stopped


def _collectable(cutoff: float) -> list[Any]:
    return [
        blobs.c.unreferenced_since.is_not(None),
        blobs.c.unreferenced_since <= cutoff,
        blobs.c.created_at <= cutoff,
        ~_referenced,
        ~_pushing_here(cutoff),
    ]


def collectable_blobs(conn: sa.Connection, cutoff: float, limit: int, after: str = "") -> list[sa.Row]:
    q = (
        sa.select(blobs.c.digest, blobs.c.size, blobs.c.storage_key)
        .where(*_collectable(cutoff), blobs.c.digest > after)
        .order_by(blobs.c.digest)
        .limit(limit)
    )
    return list(conn.execute(q))


def delete_blobs(conn: sa.Connection, digests: list[str], cutoff: float) -> list[sa.Row]:
    """Delete the rows of those ``digests`` that are still collectable; returns what went (the
    caller deletes their bytes after the commit).

    On PostgreSQL the rows are taken FOR UPDATE (in digest order, like ``store.lock_blobs``): a
    manifest PUT holding one makes this wait and then re-check the row, which the PUT left
    referenced (``unreferenced_since`` NULL), so it is not deleted."""
    q = (
        sa.select(blobs.c.digest, blobs.c.size, blobs.c.storage_key)
        .where(blobs.c.digest.in_(digests), *_collectable(cutoff))
        .order_by(blobs.c.digest)
    )
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(of=blobs)
    rows = list(conn.execute(q))
    gone = [r.digest for r in rows]
    if gone:
        conn.execute(sa.delete(repository_blobs).where(repository_blobs.c.digest.in_(gone)))
        conn.execute(sa.delete(blobs).where(blobs.c.digest.in_(gone)))
    return rows


def stored_keys(conn: sa.Connection, digests: Iterable[str]) -> dict[str, str | None]:
    """digest -> storage_key (None: the legacy digest key) for those of ``digests`` with a row."""
    wanted = list(digests)
    if not wanted:
        return {}
    q = sa.select(blobs.c.digest, blobs.c.storage_key).where(blobs.c.digest.in_(wanted))
    return {row.digest: row.storage_key for row in conn.execute(q)}


def owned_keys(conn: sa.Connection, keys: Iterable[str]) -> set[str]:
    """Those of ``keys`` that a blob row names as its storage key."""
    wanted = list(keys)
    if not wanted:
        return set()
    return set(conn.execute(sa.select(blobs.c.storage_key).where(blobs.c.storage_key.in_(wanted))).scalars())


def totals(conn: sa.Connection) -> dict[str, int]:
    blob_count, blob_bytes = conn.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(blobs.c.size), 0))
    ).one()
    manifest_count = conn.execute(sa.select(sa.func.count()).select_from(manifests)).scalar_one()
    return {"blobs": blob_count, "blob_bytes": int(blob_bytes), "manifests": manifest_count}


def waiting(conn: sa.Connection, cutoff: float) -> tuple[int, int]:
    """Unreferenced blobs whose clock has not run out yet: (count, bytes)."""
    count, size = conn.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(blobs.c.size), 0)).where(
            blobs.c.unreferenced_since.is_not(None), ~_referenced, ~sa.and_(*_collectable(cutoff))
        )
    ).one()
    return int(count), int(size)
