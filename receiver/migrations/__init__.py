"""Alembic migrations, run with ``gbg-receiver migrate`` (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

_MIGRATE_LOCK = 0x6762_6702  # PostgreSQL advisory lock key: two migrators never interleave


def upgrade(engine: Engine) -> None:
    """Create or upgrade the schema to the newest revision; idempotent."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATE_LOCK)))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
