"""The outbox: each status change's message to the application, sent by the workers.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None
phase = "expand"

PENDING = sa.text("status = 'pending'")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("seq", BigId, primary_key=True, autoincrement=False),
        sa.Column("instance_id", sa.String(128), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float),
        sa.Column("last_attempt_at", sa.Float),
        sa.Column("last_error", sa.String(256)),
        sa.Column("delivered_at", sa.Float),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_expires_at", sa.Float),
    )
    for name, column in (
        ("ix_outbox_due", "next_attempt_at"),
        ("ix_outbox_pending_instance", "instance_id"),
    ):
        op.create_index(name, "outbox", [column], sqlite_where=PENDING, postgresql_where=PENDING)
    op.create_index("ix_outbox_status_seq", "outbox", ["status", "seq"])


def downgrade() -> None:
    op.drop_table("outbox")
