"""What was tried for an instance: its state fetches and its forward attempts, each with
what came of it. Written in the transaction that folds the fetch or records the
attempt; read back as part of the instance's timeline; purged with retention."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from receiver.store.purging import delete_batch
from receiver.store.schema import attempts

SHOWN = 200  # an instance's latest attempts of each kind in its timeline


def record(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Add attempts: instance_id, at, kind, outcome and (as they apply) gbg_status,
    seconds, seq."""
    if rows:
        conn.execute(attempts.insert(), rows)


def for_instance(conn: Connection, instance_id: str) -> list[dict[str, Any]]:
    """The instance's latest attempts, oldest first."""
    latest = (
        sa.select(attempts)
        .where(attempts.c.instance_id == instance_id)
        .order_by(attempts.c.id.desc())
        .limit(SHOWN)
    )
    return [dict(r._mapping) for r in conn.execute(latest)][::-1]


def purge(conn: Connection, before: float, limit: int) -> int:
    """Delete up to ``limit`` attempts made before ``before``."""
    return delete_batch(conn, attempts, limit, attempts.c.at < before)
