"""Queries over the metadata schema. Each function takes a Connection inside a transaction
(``Database.run``), so a caller composes them into one atomic change."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from dockyard.meta.tables import (
    blobs,
    manifest_references,
    manifests,
    repositories,
    repository_blobs,
    repository_manifests,
    tags,
    uploads,
)


def _insert_ignore(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]] | dict[str, Any]) -> None:
    """INSERT that silently keeps an existing row: concurrent pushes of equal content race here."""
    if not rows:
        return
    conn.execute(_dialect(conn).insert(table).on_conflict_do_nothing(), rows)


def _dialect(conn: sa.Connection) -> Any:
    return postgresql if conn.dialect.name == "postgresql" else sqlite


# -- repositories -------------------------------------------------------------------------


def repository_id(conn: sa.Connection, name: str) -> int | None:
    return conn.execute(sa.select(repositories.c.id).where(repositories.c.name == name)).scalar()


def ensure_repository(conn: sa.Connection, name: str) -> int:
    _insert_ignore(conn, repositories, {"name": name, "created_at": time.time()})
    return conn.execute(sa.select(repositories.c.id).where(repositories.c.name == name)).scalar_one()


def list_repositories(conn: sa.Connection, limit: int | None, last: str | None) -> list[str]:
    q = sa.select(repositories.c.name).order_by(repositories.c.name)
    if last:
        q = q.where(repositories.c.name > last)
    if limit is not None:
        q = q.limit(limit)
    return list(conn.execute(q).scalars())


# -- blobs --------------------------------------------------------------------------------


def blob_in_repository(conn: sa.Connection, name: str, digest: str) -> sa.Row | None:
    """(size, storage_key, unreferenced_since) of a blob visible in ``name``."""
    q = (
        sa.select(blobs.c.size, blobs.c.storage_key, blobs.c.unreferenced_since)
        .select_from(repository_blobs.join(blobs).join(repositories))
        .where(repositories.c.name == name, repository_blobs.c.digest == digest)
    )
    return conn.execute(q).first()


def blob_size(conn: sa.Connection, digest: str) -> int | None:
    return conn.execute(sa.select(blobs.c.size).where(blobs.c.digest == digest)).scalar()


def touch_blob(conn: sa.Connection, digest: str) -> bool:
    """Restart the garbage collector's clock on an unreferenced blob that a client has just
    checked for, mounted or uploaded again: a push in progress is about to reference it.
    False when the blob is gone (collected an instant ago), so the client uploads it instead."""
    result = conn.execute(
        sa.update(blobs)
        .where(blobs.c.digest == digest, blobs.c.unreferenced_since.is_not(None))
        .values(unreferenced_since=time.time())
    )
    return result.rowcount > 0 or blob_size(conn, digest) is not None


def add_blob(conn: sa.Connection, name: str, digest: str, size: int, storage_key: str | None) -> bool:
    """Record a verified blob and make it visible in ``name``. False when the blob was already
    stored (under another key, which stays in use): the caller then drops its own copy."""
    now = time.time()
    # RETURNING says whether the row is new; an INSERT's rowcount is not reliable across drivers
    # (SQLAlchemy reports -1 for it with psycopg).
    inserted = (
        conn.execute(
            _dialect(conn)
            .insert(blobs)
            .values(digest=digest, size=size, created_at=now, storage_key=storage_key, unreferenced_since=now)
            .on_conflict_do_nothing()
            .returning(blobs.c.digest)
        ).first()
        is not None
    )
    if not inserted:
        touch_blob(conn, digest)
    link_blob(conn, name, digest)
    return bool(inserted)


def repositories_with_blob(conn: sa.Connection, digest: str, limit: int = 1000) -> list[str]:
    q = (
        sa.select(repositories.c.name)
        .select_from(repository_blobs.join(repositories))
        .where(repository_blobs.c.digest == digest)
        .order_by(repositories.c.name)
        .limit(limit)
    )
    return list(conn.execute(q).scalars())


def lock_blobs(conn: sa.Connection, digests: Iterable[str]) -> None:
    """Hold the rows of blobs a manifest is about to reference until the transaction ends.

    With several writers (PostgreSQL), a collection could otherwise delete a blob between this
    transaction's check that it is linked and its commit: the collection takes its rows FOR
    UPDATE, so either it waits here and then finds the blob referenced, or this waits for it and
    the check that follows finds the link gone. The lock is the one the UPDATE of
    ``unreferenced_since`` takes anyway (FOR NO KEY UPDATE: a share lock would let two pushes of
    the same new layer deadlock on that UPDATE), in digest order, so concurrent pushes of images
    that share layers queue instead of deadlocking. SQLite's single writer needs none of this."""
    wanted = sorted(set(digests))
    if wanted and conn.dialect.name == "postgresql":
        q = sa.select(blobs.c.digest).where(blobs.c.digest.in_(wanted)).order_by(blobs.c.digest)
        conn.execute(q.with_for_update(key_share=True)).all()


def link_blob(conn: sa.Connection, name: str, digest: str) -> None:
    repo_id = ensure_repository(conn, name)
    _insert_ignore(conn, repository_blobs, {"repository_id": repo_id, "digest": digest, "created_at": time.time()})


def unlink_blob(conn: sa.Connection, name: str, digest: str) -> bool:
    repo_id = repository_id(conn, name)
    if repo_id is None:
        return False
    result = conn.execute(
        sa.delete(repository_blobs).where(
            repository_blobs.c.repository_id == repo_id, repository_blobs.c.digest == digest
        )
    )
    return result.rowcount > 0


def missing_blobs(conn: sa.Connection, repo_id: int | None, digests: Iterable[str]) -> set[str]:
    return _missing(conn, repository_blobs, repo_id, digests)


def missing_manifests(conn: sa.Connection, repo_id: int | None, digests: Iterable[str]) -> set[str]:
    return _missing(conn, repository_manifests, repo_id, digests)


def _missing(conn: sa.Connection, links: sa.Table, repo_id: int | None, digests: Iterable[str]) -> set[str]:
    """Which of ``digests`` are not linked to the repository through ``links``."""
    wanted = set(digests)
    if not wanted or repo_id is None:
        return wanted
    q = sa.select(links.c.digest).where(links.c.repository_id == repo_id, links.c.digest.in_(wanted))
    return wanted - set(conn.execute(q).scalars())


# -- manifests and tags -------------------------------------------------------------------


def put_manifest(
    conn: sa.Connection,
    name: str,
    record: dict[str, Any],
    references: list[tuple[str, str]],
    tag_names: list[str],
) -> None:
    """Store a validated manifest, link it to ``name`` and point ``tag_names`` at it, atomically."""
    now = time.time()
    repo_id = ensure_repository(conn, name)
    _insert_ignore(conn, manifests, {**record, "created_at": now})
    _insert_ignore(
        conn,
        manifest_references,
        [{"manifest_digest": record["digest"], "target_digest": d, "kind": k} for d, k in references],
    )
    _insert_ignore(
        conn, repository_manifests, {"repository_id": repo_id, "digest": record["digest"], "created_at": now}
    )
    blob_digests = [d for d, kind in references if kind == "blob"]
    if blob_digests:
        # Referenced now: stop the collector's clock (and, on PostgreSQL, lock the rows against a
        # concurrent collection deleting one of them).
        conn.execute(
            sa.update(blobs)
            .where(blobs.c.digest.in_(blob_digests), blobs.c.unreferenced_since.is_not(None))
            .values(unreferenced_since=None)
        )
    conn.execute(sa.update(repositories).where(repositories.c.id == repo_id).values(last_push_at=now))
    for tag in tag_names:
        stmt = (
            _dialect(conn).insert(tags).values(repository_id=repo_id, name=tag, digest=record["digest"], updated_at=now)
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[tags.c.repository_id, tags.c.name],
                set_={"digest": stmt.excluded.digest, "updated_at": stmt.excluded.updated_at},
            )
        )


def link_manifest(conn: sa.Connection, name: str, digest: str) -> None:
    repo_id = ensure_repository(conn, name)
    _insert_ignore(conn, repository_manifests, {"repository_id": repo_id, "digest": digest, "created_at": time.time()})


_MANIFEST_COLUMNS = (manifests.c.digest, manifests.c.media_type, manifests.c.content)


def manifest_by_tag(conn: sa.Connection, name: str, tag: str) -> sa.Row | None:
    q = (
        sa.select(*_MANIFEST_COLUMNS)
        .select_from(tags.join(repositories).join(manifests, manifests.c.digest == tags.c.digest))
        .where(repositories.c.name == name, tags.c.name == tag)
    )
    return conn.execute(q).first()


def manifest_by_digest(conn: sa.Connection, name: str, digest: str) -> sa.Row | None:
    q = (
        sa.select(*_MANIFEST_COLUMNS)
        .select_from(repository_manifests.join(repositories).join(manifests))
        .where(repositories.c.name == name, repository_manifests.c.digest == digest)
    )
    return conn.execute(q).first()


def manifest_content(conn: sa.Connection, digest: str) -> sa.Row | None:
    return conn.execute(sa.select(*_MANIFEST_COLUMNS).where(manifests.c.digest == digest)).first()


def delete_manifest(conn: sa.Connection, name: str, digest: str) -> bool:
    """Unlink a manifest from a repository together with every tag that points at it."""
    repo_id = repository_id(conn, name)
    if repo_id is None:
        return False
    conn.execute(sa.delete(tags).where(tags.c.repository_id == repo_id, tags.c.digest == digest))
    result = conn.execute(
        sa.delete(repository_manifests).where(
            repository_manifests.c.repository_id == repo_id, repository_manifests.c.digest == digest
        )
    )
    return result.rowcount > 0


def tags_of(conn: sa.Connection, name: str, digest: str) -> list[str]:
    q = (
        sa.select(tags.c.name)
        .select_from(tags.join(repositories))
        .where(repositories.c.name == name, tags.c.digest == digest)
        .order_by(tags.c.name)
    )
    return list(conn.execute(q).scalars())


def tag_digest(conn: sa.Connection, name: str, tag: str) -> str | None:
    q = (
        sa.select(tags.c.digest)
        .select_from(tags.join(repositories))
        .where(repositories.c.name == name, tags.c.name == tag)
    )
    return conn.execute(q).scalar()


def delete_tag(conn: sa.Connection, name: str, tag: str) -> bool:
    repo_id = repository_id(conn, name)
    if repo_id is None:
        return False
    return conn.execute(sa.delete(tags).where(tags.c.repository_id == repo_id, tags.c.name == tag)).rowcount > 0


def list_tags(conn: sa.Connection, name: str, limit: int | None, last: str | None) -> list[str] | None:
    repo_id = repository_id(conn, name)
    if repo_id is None:
        return None
    q = sa.select(tags.c.name).where(tags.c.repository_id == repo_id).order_by(tags.c.name)
    if last:
        q = q.where(tags.c.name > last)
    if limit is not None:
        q = q.limit(limit)
    return list(conn.execute(q).scalars())


def referrers(conn: sa.Connection, name: str, subject: str) -> list[sa.Row]:
    q = (
        sa.select(
            manifests.c.digest,
            manifests.c.media_type,
            manifests.c.size,
            manifests.c.artifact_type,
            manifests.c.annotations,
        )
        .select_from(manifests.join(repository_manifests).join(repositories))
        .where(repositories.c.name == name, manifests.c.subject == subject)
        .order_by(manifests.c.created_at, manifests.c.digest)
    )
    return list(conn.execute(q))


# -- upload sessions ----------------------------------------------------------------------


def create_upload(conn: sa.Connection, upload_id: str, name: str) -> None:
    now = time.time()
    conn.execute(sa.insert(uploads).values(id=upload_id, repository=name, created_at=now, updated_at=now))


def get_upload(conn: sa.Connection, upload_id: str) -> sa.Row | None:
    return conn.execute(sa.select(uploads).where(uploads.c.id == upload_id)).first()


def delete_upload(conn: sa.Connection, upload_id: str) -> None:
    conn.execute(sa.delete(uploads).where(uploads.c.id == upload_id))


def touch_upload(conn: sa.Connection, upload_id: str) -> None:
    """Keep a session that is still receiving bytes from looking abandoned to the collector."""
    conn.execute(sa.update(uploads).where(uploads.c.id == upload_id).values(updated_at=time.time()))


def save_upload(
    conn: sa.Connection,
    upload_id: str,
    version: int,
    size: int,
    hash_state: bytes | None,
    storage_state: str | None,
) -> bool:
    """Record where a session stands, if no other request saved it since ``version`` was read:
    of two requests racing on one session, exactly one is recorded."""
    result = conn.execute(
        sa.update(uploads)
        .where(uploads.c.id == upload_id, uploads.c.version == version)
        .values(
            size=size,
            hash_state=hash_state,
            storage_state=storage_state,
            version=version + 1,
            updated_at=time.time(),
        )
    )
    return result.rowcount > 0


def next_part(conn: sa.Connection, upload_id: str) -> int:
    """A part number no other request on the session got (the UPDATE locks the row)."""
    conn.execute(sa.update(uploads).where(uploads.c.id == upload_id).values(parts=uploads.c.parts + 1))
    number = conn.execute(sa.select(uploads.c.parts).where(uploads.c.id == upload_id)).scalar()
    if number is None:
        raise LookupError(f"upload {upload_id} is gone")
    return int(number)


def finish_upload(
    conn: sa.Connection, upload_id: str | None, name: str, digest: str, size: int, storage_key: str
) -> bool:
    """Make the blob visible and end the session in one transaction: a snapshot sees either the
    session (its bytes are still being committed) or the blob row, never neither."""
    inserted = add_blob(conn, name, digest, size, storage_key)
    if upload_id:
        delete_upload(conn, upload_id)
    return inserted
