"""Initial schema: instances, raw deliveries, the event log, the shared rate limit.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None
phase = "expand"

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("instance_id", sa.String(128), primary_key=True),
        sa.Column("reference", sa.String(256)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("gbg_status", sa.String(64)),
        sa.Column("outcome", sa.String(256)),
        sa.Column("result", sa.JSON),
        sa.Column("journey", sa.JSON),
        sa.Column("state", sa.JSON),
        sa.Column("webhook_claim", sa.String(64)),
        sa.Column("registered_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("webhook_received_at", sa.Float),
        sa.Column("last_polled_at", sa.Float),
        sa.Column("completed_at", sa.Float),
        sa.Column("next_poll_at", sa.Float),
        sa.Column("poll_errors", sa.Integer, nullable=False),
        sa.Column("polling_gave_up", sa.Boolean, nullable=False),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_expires_at", sa.Float),
    )
    for name, column in (("due", "next_poll_at"), ("lease_owner", "lease_owner")):
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            f"ix_instances_{name}",
            "instances",
            [column],
            sqlite_where=where,
            postgresql_where=where,
        )
    unfinished = sa.text("status = 'in_progress'")
    op.create_index(
        "ix_instances_unfinished",
        "instances",
        ["registered_at"],
        sqlite_where=unfinished,
        postgresql_where=unfinished,
    )
    op.create_index("ix_instances_newest", "instances", ["registered_at", "instance_id"])
    op.create_index(
        "ix_instances_status_newest", "instances", ["status", "registered_at", "instance_id"]
    )

    op.create_table(
        "deliveries",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("instance_id", sa.String(128), nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("peer", sa.String(64)),
        sa.Column("claim", sa.String(64)),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("body", sa.LargeBinary),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_deliveries_instance_id", "deliveries", ["instance_id"])
    op.create_index("ix_deliveries_received_at", "deliveries", ["received_at"])

    op.create_table(
        "events",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("instance_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("previous_status", sa.String(16)),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_instance_id", "events", ["instance_id"])

    rate_limits = op.create_table(
        "rate_limits",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("tat", sa.Float, nullable=False),
    )
    op.bulk_insert(rate_limits, [{"name": "gbg_state_fetch", "tat": 0.0}])


def downgrade() -> None:
    for table in ("rate_limits", "events", "deliveries", "instances"):
        op.drop_table(table)
