"""Why a poll fails: each instance keeps its last fetch error.

Revision ID: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None
phase = "expand"


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("last_error", sa.JSON(none_as_null=True)))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("last_error")
