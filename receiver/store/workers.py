"""The workers' heartbeats: each worker process writes its own row every few seconds, so
any host can tell which workers run and how long ago each was last seen."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from receiver.store.purging import delete_batch
from receiver.store.schema import workers

LISTED = 20  # the most recently seen workers that a read lists


def beat(conn: Connection, owner: str, now: float, skew: float, *, stopped: bool = False) -> None:
    """Record that ``owner`` was seen at ``now``, its host's clock ``skew`` seconds off the
    database's (and, with ``stopped``, that it stopped)."""
    values = {"seen_at": now, "stopped_at": now if stopped else None, "clock_skew": skew}
    if not conn.execute(workers.update().where(workers.c.owner == owner).values(values)).rowcount:
        conn.execute(workers.insert().values(owner=owner, started_at=now, **values))


def seen(conn: Connection) -> list[dict[str, Any]]:
    """The workers seen most recently, newest first."""
    query = sa.select(workers).order_by(workers.c.seen_at.desc(), workers.c.owner).limit(LISTED)
    return [dict(row._mapping) for row in conn.execute(query)]


def newest(conn: Connection) -> float | None:
    """When a worker was last seen, running or stopping (None: never)."""
    seen_at: float | None = conn.execute(sa.select(sa.func.max(workers.c.seen_at))).scalar()
    return seen_at


def purge(conn: Connection, before: float, limit: int) -> int:
    """Forget up to ``limit`` workers last seen before ``before``."""
    return delete_batch(conn, workers, limit, workers.c.seen_at < before)
