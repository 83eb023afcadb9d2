"""Liveness in the store: every worker's heartbeat, seen from every host.

Revision ID: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None
phase = "expand"


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("seen_at", sa.Float, nullable=False),
        sa.Column("stopped_at", sa.Float),
        sa.Column("clock_skew", sa.Float),
    )


def downgrade() -> None:
    op.drop_table("workers")
