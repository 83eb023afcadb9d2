"""The event log: one row per status change, with a strictly increasing ``seq``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from receiver.domain.model import Event
from receiver.store.schema import events

_ORDER_LOCK = 0x6762_6701  # PostgreSQL advisory lock key: "gbg" + 1
_APPEND = events.insert().returning(events.c.seq, sort_by_parameter_order=True)


def append(conn: Connection, new: list[Event]) -> list[int]:
    """Append the events; answer their seqs, in the same order."""
    if conn.dialect.name == "postgresql":
        # Sequence values are handed out before commit; holding this lock to commit
        # makes seq order commit order, so ?after= never skips an event.
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ORDER_LOCK)))
    rows = conn.execute(
        _APPEND,
        [
            {
                "instance_id": e.instance_id,
                "status": e.status,
                "previous_status": e.previous_status,
                "source": e.source,
                "at": e.at,
            }
            for e in new
        ],
    )
    return [int(seq) for (seq,) in rows]


def after(conn: Connection, seq: int, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(events).where(events.c.seq > seq).order_by(events.c.seq).limit(limit)
    )
    return [dict(r._mapping) for r in rows]


def for_instance(conn: Connection, instance_id: str) -> list[dict[str, Any]]:
    """One instance's status changes, oldest first."""
    rows = conn.execute(
        sa.select(events).where(events.c.instance_id == instance_id).order_by(events.c.seq)
    )
    return [dict(r._mapping) for r in rows]


def endings_by_hour(conn: Connection, since: float) -> list[tuple[int, str, int]]:
    """Journeys that ended (completed or failed) since ``since``, as (hour, source, count),
    the hour counted in whole hours since the epoch."""
    hours = events.c.at / 3600
    # Both truncate towards zero, which is the floor for any time after 1970.
    hour = sa.func.floor(hours) if conn.dialect.name == "postgresql" else sa.cast(hours, sa.Integer)
    rows = conn.execute(
        sa.select(hour, events.c.source, sa.func.count())
        .where(events.c.at >= since, events.c.status.in_(("completed", "failed")))
        .group_by(hour, events.c.source)
    )
    return [(int(h), source, int(n)) for h, source, n in rows]


def endings_by_source(conn: Connection) -> dict[str, int]:
    """How many journeys ended (completed or failed) as found by each source."""
    return dict(
        conn.execute(
            sa.select(events.c.source, sa.func.count())
            .where(events.c.status.in_(("completed", "failed")))
            .group_by(events.c.source)
        ).all()
    )
