"""Usage, garbage collection, policies, quotas, webhooks and job leases.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def _one_target() -> list[sa.Column]:
    return [
        sa.Column("namespace", sa.String(255), nullable=True),
        sa.Column("repository", sa.String(255), nullable=True),
    ]


def upgrade() -> None:
    # Plain ADD/DROP COLUMN, not batch copies: with foreign keys on, SQLite cannot drop a table
    # that tags and links reference, and both engines add and drop nullable columns in place.
    op.add_column("repositories", sa.Column("last_push_at", sa.Float, nullable=True))
    op.add_column("repositories", sa.Column("last_pull_at", sa.Float, nullable=True))
    op.add_column("blobs", sa.Column("storage_key", sa.String(300), nullable=True))
    op.add_column("blobs", sa.Column("unreferenced_since", sa.Float, nullable=True))
    op.create_index("ix_blobs_unreferenced_since", "blobs", ["unreferenced_since"])
    op.add_column("repository_manifests", sa.Column("last_pulled_at", sa.Float, nullable=True))
    # Which repositories hold a blob: the primary key leads with the repository, so without this
    # every lookup by digest (a deduplicating HEAD, a mount, the collector) scanned the table.
    op.create_index("ix_repository_blobs_digest", "repository_blobs", ["digest"])
    op.create_index("ix_repository_manifests_digest", "repository_manifests", ["digest"])

    op.create_table(
        "usage_daily",
        sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("pushes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("pulls", sa.Integer, nullable=False, server_default="0"),
        sa.Column("bytes_served", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("bytes_received", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "policies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        *_one_target(),
        sa.Column("rules", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.CheckConstraint("(namespace IS NULL) <> (repository IS NULL)", name="ck_policies_one_target"),
        sa.CheckConstraint("kind IN ('retention', 'immutability')", name="ck_policies_kind"),
    )
    for target in ("namespace", "repository"):
        op.create_index(
            f"uq_policies_{target}",
            "policies",
            ["kind", target],
            unique=True,
            sqlite_where=sa.text(f"{target} IS NOT NULL"),
            postgresql_where=sa.text(f"{target} IS NOT NULL"),
        )
    op.create_table(
        "quotas",
        sa.Column("namespace", sa.String(255), primary_key=True),
        sa.Column("limit_bytes", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        *_one_target(),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("secret", sa.String(255), nullable=False),
        sa.Column("events", sa.String(64), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.CheckConstraint("(namespace IS NULL) <> (repository IS NULL)", name="ck_webhooks_one_target"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.String(36), nullable=False, unique=True),
        sa.Column("webhook_id", sa.Integer, sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("delivered_at", sa.Float, nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_duration_ms", sa.Float, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_webhook_deliveries_webhook", "webhook_deliveries", ["webhook_id", "id"])
    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("result", sa.Text, nullable=True),
    )
    op.create_index("ix_job_runs_job", "job_runs", ["job", "id"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("leases", "job_runs", "webhook_deliveries", "webhooks", "quotas", "policies", "usage_daily"):
        op.drop_table(table)
    op.drop_index("ix_repository_manifests_digest", "repository_manifests")
    op.drop_index("ix_repository_blobs_digest", "repository_blobs")
    op.drop_column("repository_manifests", "last_pulled_at")
    op.drop_index("ix_blobs_unreferenced_since", "blobs")
    op.drop_column("blobs", "unreferenced_since")
    op.drop_column("blobs", "storage_key")
    op.drop_column("repositories", "last_pull_at")
    op.drop_column("repositories", "last_push_at")
