"""Accounts and access control: users, organizations, teams, grants, repository visibility.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    # A constant server default lets SQLite add the column in place (no table copy), and fills
    # it in for the repositories that already exist: they stay private.
    with op.batch_alter_table("repositories") as batch:
        batch.add_column(sa.Column("visibility", sa.String(16), nullable=False, server_default="private"))
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "organizations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "teams",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("organization_id", sa.Integer, sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.UniqueConstraint("organization_id", "name", name="uq_teams_organization_name"),
    )
    op.create_table(
        "team_members",
        sa.Column("team_id", sa.Integer, sa.ForeignKey("teams.id"), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True),
    )
    op.create_index("ix_team_members_user", "team_members", ["user_id"])
    op.create_table(
        "grants",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subject_type", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.Integer, nullable=False),
        sa.Column("namespace", sa.String(255), nullable=True),
        sa.Column("repository", sa.String(255), nullable=True),
        sa.Column("level", sa.Integer, nullable=False),
        sa.CheckConstraint("(namespace IS NULL) <> (repository IS NULL)", name="ck_grants_one_target"),
    )
    op.create_index("ix_grants_subject", "grants", ["subject_type", "subject_id"])
    for target in ("namespace", "repository"):
        where = sa.text(f"{target} IS NOT NULL")
        op.create_index(
            f"uq_grants_{target}",
            "grants",
            [target, "subject_type", "subject_id"],
            unique=True,
            sqlite_where=where,
            postgresql_where=where,
        )


def downgrade() -> None:
    for table in ("grants", "team_members", "teams", "organizations", "users"):
        op.drop_table(table)
    # Not a batch operation: on SQLite that copies the table, and dropping the original while
    # tags and links reference it fails with foreign keys on. Both SQLite >= 3.35 and
    # PostgreSQL drop a column in place.
    op.execute("ALTER TABLE repositories DROP COLUMN visibility")
