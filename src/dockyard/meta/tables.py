"""The metadata schema. Blob bytes live in storage; everything that says *where* a blob or
manifest is visible lives here, so visibility changes are single transactions."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

repositories = sa.Table(
    "repositories",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

# A blob row exists only once its bytes are verified and committed to storage.
blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("digest", sa.String(160), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Which repositories may serve which blobs (a push, a mount or a manifest reference links them).
repository_blobs = sa.Table(
    "repository_blobs",
    metadata,
    sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id"), primary_key=True),
    sa.Column("digest", sa.String(160), sa.ForeignKey("blobs.digest"), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Manifests are small (<= 4 MiB) and read far more than written: their bytes are kept here so a
# pull is one indexed lookup rather than a tag file, a link file and a blob read.
manifests = sa.Table(
    "manifests",
    metadata,
    sa.Column("digest", sa.String(160), primary_key=True),
    sa.Column("media_type", sa.String(255), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("subject", sa.String(160), nullable=True, index=True),
    sa.Column("artifact_type", sa.String(255), nullable=True),
    sa.Column("annotations", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

repository_manifests = sa.Table(
    "repository_manifests",
    metadata,
    sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id"), primary_key=True),
    sa.Column("digest", sa.String(160), sa.ForeignKey("manifests.digest"), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

# What a manifest points at: layers and config (kind "blob") or index children (kind
# "manifest"). Garbage collection walks these; they are never needed on the pull path.
manifest_references = sa.Table(
    "manifest_references",
    metadata,
    sa.Column("manifest_digest", sa.String(160), sa.ForeignKey("manifests.digest"), primary_key=True),
    sa.Column("target_digest", sa.String(160), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Index("ix_manifest_references_target", "target_digest"),
)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id"), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("digest", sa.String(160), sa.ForeignKey("manifests.digest"), nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_tags_digest", "digest"),
)

# Upload sessions survive restarts: the row says which repository a session belongs to; its bytes
# and saved hash state are in storage under uploads/<id>/ (see registry.uploads).
uploads = sa.Table(
    "uploads",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("repository", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
