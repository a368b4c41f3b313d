"""Stored values carry the digest of their bytes (verified on load); executions carry pid and heartbeat.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("value") as batch:
        batch.add_column(sa.Column("digest", sa.String(64), nullable=True))
    with op.batch_alter_table("execution") as batch:
        batch.add_column(sa.Column("pid", sa.Integer, nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("execution") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("pid")
    with op.batch_alter_table("value") as batch:
        batch.drop_column("digest")
