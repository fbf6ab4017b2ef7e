"""Upload sessions keep their state in the database (any replica continues them); blob keys are
indexed for the collector's orphan scan.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("size", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("hash_state", sa.LargeBinary, nullable=True))
        batch.add_column(sa.Column("storage_state", sa.Text, nullable=True))
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("parts", sa.Integer, nullable=False, server_default="0"))
    op.create_index("ix_blobs_storage_key", "blobs", ["storage_key"])


def downgrade() -> None:
    op.drop_index("ix_blobs_storage_key", "blobs")
    with op.batch_alter_table("uploads") as batch:
        for name in ("parts", "version", "storage_state", "hash_state", "size"):
            batch.drop_column(name)
