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
    # 'private' | 'public'. The server default makes a repository created by a push private
    # without the registry code having to know about access control.
    sa.Column("visibility", sa.String(16), nullable=False, server_default="private"),
    # Usage facts kept on the row (pushes and pulls per day are in usage_daily).
    sa.Column("last_push_at", sa.Float, nullable=True),
    sa.Column("last_pull_at", sa.Float, nullable=True),
    sa.Column("description", sa.Text, nullable=True),  # Markdown, set by the repository's admins
)

# A blob row exists only once its bytes are verified and committed to storage.
#
# storage_key: where the bytes are. Every committed upload gets a key of its own
# (``blobs/<alg>/<xx>/<hex>.<upload id>`` on the filesystem; ``blobs/upload/<upload id>`` on S3,
# where the multipart upload is created at its final key before the digest is known), so garbage
# collection deleting an old copy can never remove the file a concurrent push of the same content
# has just committed. NULL means the digest-derived key of registries created before keys were
# recorded. Indexed for the collector's orphan scan, which asks who owns a listed key.
#
# unreferenced_since: the garbage collector's clock. NULL while a manifest references the blob;
# set when a collection finds it unreferenced; reset to "now" whenever a client HEADs, mounts or
# re-uploads it (a push in progress may be about to reference it). A blob is deleted only when
# the clock is older than the grace period.
blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("digest", sa.String(160), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("storage_key", sa.String(300), nullable=True, index=True),
    sa.Column("unreferenced_since", sa.Float, nullable=True, index=True),
)

# Which repositories may serve which blobs (a push, a mount or a manifest reference links them).
repository_blobs = sa.Table(
    "repository_blobs",
    metadata,
    sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id"), primary_key=True),
    sa.Column("digest", sa.String(160), sa.ForeignKey("blobs.digest"), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
    # By blob: which repositories hold it (deduplicating HEADs, mounts, garbage collection).
    sa.Index("ix_repository_blobs_digest", "digest"),
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
    # For retention's "keep what was pulled within": written in batches, not on every pull.
    sa.Column("last_pulled_at", sa.Float, nullable=True),
    sa.Index("ix_repository_manifests_digest", "digest"),  # which repositories hold a manifest
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

# Upload sessions survive restarts and continue on any replica: the row says which repository a
# session belongs to and everything a later request needs (see registry.uploads):
#   size: bytes received as of the last save (what S3 holds; the file may be longer after a crash)
#   hash_state: the running SHA-256 (OpenSSL's SHA256_CTX) over the first ``size`` bytes, or NULL
#   storage_state: the driver's own record (S3: multipart UploadId, parts and ETags, tail object)
#   version: bumped by every save; a save is conditional on the version its request started from,
#       so of two requests racing on a session one wins and the other gets 416
#   parts: part numbers handed out (S3 multipart), so racing requests never write the same part
uploads = sa.Table(
    "uploads",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("repository", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("hash_state", sa.LargeBinary, nullable=True),
    sa.Column("storage_state", sa.Text, nullable=True),
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("parts", sa.Integer, nullable=False, server_default="0"),
)


# -- accounts (see dockyard.auth.accounts) ----------------------------------------------------
# User and organization names share one namespace (the first component of a repository name);
# accounts.py checks both tables before creating either.

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),  # argon2id, PHC string format
    sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
)

organizations = sa.Table(
    "organizations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

teams = sa.Table(
    "teams",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("organization_id", sa.Integer, sa.ForeignKey("organizations.id"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.UniqueConstraint("organization_id", "name", name="uq_teams_organization_name"),
)

# Looked up by user on every permission check, hence the index on user_id (the primary key
# leads with team_id).
team_members = sa.Table(
    "team_members",
    metadata,
    sa.Column("team_id", sa.Integer, sa.ForeignKey("teams.id"), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True),
    sa.Index("ix_team_members_user", "user_id"),
)

# A grant gives a subject (a user or a team, hence no foreign key on subject_id) a level on one
# repository or on a whole namespace. NULLs are distinct in a plain UNIQUE on both SQLite and
# PostgreSQL, so uniqueness is two partial indexes, one per kind of target. They lead with the
# target because the per-request check looks grants up by repository and namespace; listing a
# subject's grants (catalog, CLI) uses ix_grants_subject.
grants = sa.Table(
    "grants",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subject_type", sa.String(16), nullable=False),  # 'user' | 'team' | 'robot'
    sa.Column("subject_id", sa.Integer, nullable=False),
    sa.Column("namespace", sa.String(255), nullable=True),
    sa.Column("repository", sa.String(255), nullable=True),
    sa.Column("level", sa.Integer, nullable=False),
    sa.CheckConstraint("(namespace IS NULL) <> (repository IS NULL)", name="ck_grants_one_target"),
    sa.Index("ix_grants_subject", "subject_type", "subject_id"),
    *(
        sa.Index(
            f"uq_grants_{target}",
            target,
            "subject_type",
            "subject_id",
            unique=True,
            sqlite_where=sa.text(f"{target} IS NOT NULL"),
            postgresql_where=sa.text(f"{target} IS NOT NULL"),
        )
        for target in ("namespace", "repository")
    ),
)


# -- credentials other than passwords (see dockyard.auth.credentials) --------------------------
# Ids appear in the JWTs issued from a credential ("pat:12", "robot:3") and are checked on use,
# so they must never be handed out twice: AUTOINCREMENT on SQLite (a plain INTEGER PRIMARY KEY
# reuses the id of the last row once it is deleted), a sequence elsewhere.

# Personal access tokens: a user's extra passwords for scripts and CI, each with a scope that caps
# what it may do. Revoking keeps the row (listing shows it) and frees the name for a new token.
access_tokens = sa.Table(
    "access_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),  # SHA-256 hex; see credentials.py for why
    sa.Column("scope", sa.String(16), nullable=False),  # 'read' | 'read-write' | 'admin'
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("last_used_at", sa.Float, nullable=True),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.CheckConstraint("scope IN ('read', 'read-write', 'admin')", name="ck_access_tokens_scope"),
    sa.Index(
        "uq_access_tokens_user_name",
        "user_id",
        "name",
        unique=True,
        sqlite_where=sa.text("revoked_at IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL"),
    ),
    sqlite_autoincrement=True,
)

# Robot accounts: an organization's non-human logins (``org+name``, as on Quay). They hold only
# their own grants (grants.subject_type 'robot'), and only on their organization's repositories.
# Removing a robot deletes the row and its grants.
robots = sa.Table(
    "robots",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("organization_id", sa.Integer, sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("organization_id", "name", name="uq_robots_organization_name"),
    sqlite_autoincrement=True,
)

# The audit log (auth.audit): logins, token grants and denials, pushes, pulls and deletes.
audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(160), nullable=False),
    sa.Column("client", sa.String(64), nullable=False),
    sa.Column("repository", sa.String(255), nullable=True),
    sa.Column("reference", sa.String(160), nullable=True),
    sa.Column("outcome", sa.String(8), nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Index("ix_audit_events_at", "at"),
    sa.Index("ix_audit_events_actor", "actor", "id"),
    sa.Index("ix_audit_events_repository", "repository", "id"),
)


# -- usage, lifecycle and events (issue 4) -----------------------------------------------------

# Pushes, pulls and bytes served per repository and UTC day, added up in memory and flushed in
# batches (see dockyard.registry.usage).
usage_daily = sa.Table(
    "usage_daily",
    metadata,
    sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),  # YYYY-MM-DD, UTC
    sa.Column("pushes", sa.Integer, nullable=False, server_default="0"),
    sa.Column("pulls", sa.Integer, nullable=False, server_default="0"),
    sa.Column("bytes_served", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("bytes_received", sa.BigInteger, nullable=False, server_default="0"),
)

# Retention and immutability rules for one repository or a whole namespace (like grants, exactly
# one target). ``rules`` is JSON, validated by dockyard.registry.policies.
policies = sa.Table(
    "policies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),  # 'retention' | 'immutability'
    sa.Column("namespace", sa.String(255), nullable=True),
    sa.Column("repository", sa.String(255), nullable=True),
    sa.Column("rules", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.CheckConstraint("(namespace IS NULL) <> (repository IS NULL)", name="ck_policies_one_target"),
    sa.CheckConstraint("kind IN ('retention', 'immutability')", name="ck_policies_kind"),
    # One policy of a kind per target: partial indexes, since NULLs are distinct in a plain UNIQUE.
    *(
        sa.Index(
            f"uq_policies_{target}",
            "kind",
            target,
            unique=True,
            sqlite_where=sa.text(f"{target} IS NOT NULL"),
            postgresql_where=sa.text(f"{target} IS NOT NULL"),
        )
        for target in ("namespace", "repository")
    ),
)

# Storage quota per namespace, in bytes of distinct blobs and manifests.
quotas = sa.Table(
    "quotas",
    metadata,
    sa.Column("namespace", sa.String(255), primary_key=True),
    sa.Column("limit_bytes", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("namespace", sa.String(255), nullable=True),
    sa.Column("repository", sa.String(255), nullable=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("secret", sa.String(255), nullable=False),  # the HMAC key; the receiver holds it too
    sa.Column("events", sa.String(64), nullable=False),  # comma-separated: push,delete,pull
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.CheckConstraint("(namespace IS NULL) <> (repository IS NULL)", name="ck_webhooks_one_target"),
    sqlite_autoincrement=True,
)

# The durable queue and delivery log: one row per (event, webhook), written in the transaction
# that changed the repository, so a crash or restart never loses an event.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.String(36), nullable=False, unique=True),
    sa.Column("webhook_id", sa.Integer, sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # 'pending' | 'delivered' | 'failed'
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("delivered_at", sa.Float, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("last_duration_ms", sa.Float, nullable=True),
    sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_webhook_deliveries_webhook", "webhook_id", "id"),
    sqlite_autoincrement=True,
)

# Runs of garbage collection and retention, for the CLI, the API and the usage dashboard.
job_runs = sa.Table(
    "job_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(16), nullable=False),  # 'gc' | 'retention'
    sa.Column("trigger", sa.String(16), nullable=False),  # 'schedule' | 'cli' | 'api'
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("result", sa.Text, nullable=True),  # JSON summary
    sa.Index("ix_job_runs_job", "job", "id"),
)

# Named leases: a scheduled job runs in one process at a time (server, CLI, or later replicas).
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)


# -- the web UI (dockyard.web.sessions) ----------------------------------------------------------

# Browser sessions: the cookie holds a random token, the row its SHA-256, so a database leak does
# not hand out live sessions. Removing a user removes their sessions.
web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

# Failed logins per client address (dockyard.auth.throttle): in the database, not in a process,
# so that N replicas or workers allow the same number of guesses as one. Rows older than the
# throttle's window are deleted as new ones arrive.
login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("client", sa.String(64), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("ix_login_failures_client_at", "client", "at"),
    sa.Index("ix_login_failures_at", "at"),
)
