"""Instances keep the URL where the person takes the journey (from GBG's v2 start).

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None
phase = "expand"


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("instance_url", sa.String(2048)))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("instance_url")
