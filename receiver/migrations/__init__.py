"""Alembic migrations, run with ``gbg-receiver migrate`` (no alembic.ini needed).

Upgrades run in two steps, so that a release rolls out with nothing stopped: each
migration says its ``phase``. An ``expand`` migration only adds (tables, indexes,
columns that are nullable or have a default): the previous release runs unchanged on
it, so ``migrate`` goes first, then the web processes, then the workers, one by one. A
``contract`` migration removes what no release still running uses; it ships at least one
release after the code stopped using it. ``tests/test_upgrades.py`` holds both: every
expand migration keeps every table, column and index, and the previous release's code
serves a journey end to end on the schema this one migrates to.
"""

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
