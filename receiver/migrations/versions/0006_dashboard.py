"""Indexes for the dashboard: endings by time, and one instance's messages.

Revision ID: 0006
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None
phase = "expand"


def upgrade() -> None:
    op.create_index("ix_events_at", "events", ["at"])
    op.create_index("ix_outbox_instance", "outbox", ["instance_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_outbox_instance", "outbox")
    op.drop_index("ix_events_at", "events")
