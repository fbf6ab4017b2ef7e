"""Credentials other than passwords: personal access tokens and robot accounts.

Robot grants live in ``grants`` with subject_type 'robot', so that table is unchanged.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    # AUTOINCREMENT: credential ids are embedded in issued JWTs and must never be reused.
    op.create_table(
        "access_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("last_used_at", sa.Float, nullable=True),
        sa.Column("revoked_at", sa.Float, nullable=True),
        sa.CheckConstraint("scope IN ('read', 'read-write', 'admin')", name="ck_access_tokens_scope"),
        sqlite_autoincrement=True,
    )
    where = sa.text("revoked_at IS NULL")
    op.create_index(
        "uq_access_tokens_user_name",
        "access_tokens",
        ["user_id", "name"],
        unique=True,
        sqlite_where=where,
        postgresql_where=where,
    )
    op.create_table(
        "robots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("organization_id", sa.Integer, sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("organization_id", "name", name="uq_robots_organization_name"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.execute("DELETE FROM grants WHERE subject_type = 'robot'")
    op.drop_table("robots")
    op.drop_table("access_tokens")
