"""Poison isolated: a delivery that cannot be folded is tried alone, then set aside.

Revision ID: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None
phase = "expand"


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("fold_tries", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("fold_error", sa.String(256)))
        batch.add_column(sa.Column("quarantined_at", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("quarantined_at")
        batch.drop_column("fold_error")
        batch.drop_column("fold_tries")
