"""One timeline: each fetch and forward attempt is kept with what came of it.

Revision ID: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None
phase = "expand"

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "attempts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("instance_id", sa.String(128), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("gbg_status", sa.String(64)),
        sa.Column("seconds", sa.Float),
        sa.Column("seq", BigId),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_attempts_at", "attempts", ["at"])
    op.create_index("ix_attempts_instance", "attempts", ["instance_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_attempts_instance", "attempts")
    op.drop_index("ix_attempts_at", "attempts")
    op.drop_table("attempts")
