"""The inbox: deliveries are folded into instances by the workers, not by the request.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None
phase = "expand"

UNFOLDED = sa.text("folded_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("folded_at", sa.Float))
    # Every delivery stored before the inbox was folded in its own request.
    op.execute("UPDATE deliveries SET folded_at = received_at")
    for name, column in (
        ("ix_deliveries_unfolded", "id"),
        ("ix_deliveries_unfolded_instance", "instance_id"),
    ):
        op.create_index(
            name, "deliveries", [column], sqlite_where=UNFOLDED, postgresql_where=UNFOLDED
        )


def downgrade() -> None:
    op.drop_index("ix_deliveries_unfolded_instance", "deliveries")
    op.drop_index("ix_deliveries_unfolded", "deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("folded_at")
