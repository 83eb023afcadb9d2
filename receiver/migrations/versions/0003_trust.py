"""Trust: the GBG-wide failure streak beside the shared rate, and the list's filters.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
phase = "expand"

GIVEN_UP = sa.text("polling_gave_up")


def upgrade() -> None:
    with op.batch_alter_table("rate_limits") as batch:
        batch.add_column(sa.Column("failures", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("paused_until", sa.Float))
    op.create_index("ix_instances_reference", "instances", ["reference"])
    op.create_index(
        "ix_instances_given_up",
        "instances",
        ["registered_at"],
        sqlite_where=GIVEN_UP,
        postgresql_where=GIVEN_UP,
    )


def downgrade() -> None:
    op.drop_index("ix_instances_given_up", "instances")
    op.drop_index("ix_instances_reference", "instances")
    with op.batch_alter_table("rate_limits") as batch:
        batch.drop_column("paused_until")
        batch.drop_column("failures")
