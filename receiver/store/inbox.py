"""The inbox: webhook deliveries as they arrived, appended by the web, folded by workers.

A delivery is committed before its 202 and folded into its instance later, in
batches; ``folded_at`` marks what is done. Several workers take disjoint batches (SKIP
LOCKED on PostgreSQL; SQLite's single writer serialises them anyway).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from receiver.store.schema import deliveries


@dataclass(frozen=True)
class Delivery:
    """A webhook as it arrived, less its credentials (what the inbox keeps)."""

    instance_id: str
    received_at: float
    body: bytes
    headers: dict[str, str]
    peer: str | None
    claim: str | None


@dataclass(frozen=True)
class Unfolded:
    """What folding needs of a delivery."""

    id: int
    instance_id: str
    received_at: float
    claim: str | None


_INSERT = "INSERT INTO deliveries (instance_id, received_at, body, headers, peer, claim) VALUES "
_MARKS = {"qmark": "(?, ?, ?, ?, ?, ?)", "format": "(%s, %s, %s, %s, %s, %s)"}
_MARKS["pyformat"] = _MARKS["format"]
_UNFOLDED = (
    sa.select(
        deliveries.c.id, deliveries.c.instance_id, deliveries.c.received_at, deliveries.c.claim
    )
    .where(deliveries.c.folded_at.is_(None))
    .order_by(deliveries.c.id)
    .limit(sa.bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_MARK = (
    deliveries.update()
    .where(deliveries.c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(folded_at=sa.bindparam("now"))
)


def append(cursor: Any, paramstyle: str, batch: list[Delivery]) -> None:
    """Append deliveries through a DB-API cursor (``Database.cursor``), in one statement.

    One statement, not the driver's executemany: each step of a statement lets other
    threads take the interpreter while this one holds the database's write lock.
    """
    values = ", ".join([_MARKS[paramstyle]] * len(batch))
    params = []
    for d in batch:
        params += [d.instance_id, d.received_at, d.body, json.dumps(d.headers), d.peer, d.claim]
    cursor.execute(_INSERT + values, params)


def take(conn: Connection, limit: int) -> list[Unfolded]:
    """The oldest unfolded deliveries, locked for this transaction, in arrival order."""
    return [Unfolded(*row) for row in conn.execute(_UNFOLDED, {"limit": limit})]


def mark_folded(conn: Connection, ids: list[int], now: float) -> None:
    conn.execute(_MARK, {"ids": ids, "now": now})


def for_instance(conn: Connection, instance_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(deliveries)
        .where(deliveries.c.instance_id == instance_id)
        .order_by(deliveries.c.id)
    )
    return [dict(r._mapping) for r in rows]


def depth(conn: Connection) -> tuple[int, float | None]:
    """How many deliveries wait to be folded, and when the oldest of them arrived."""
    count, oldest = conn.execute(
        sa.select(sa.func.count(), sa.func.min(deliveries.c.received_at)).where(
            deliveries.c.folded_at.is_(None)
        )
    ).one()
    return int(count), oldest


def erase(conn: Connection, instance_id: str) -> list[float]:
    """Delete the instance's deliveries; answer when the unfolded ones among them arrived
    (the caller folds those, so erasing never loses what a 202 acknowledged)."""
    mine = deliveries.c.instance_id == instance_id
    unfolded = conn.execute(
        sa.select(deliveries.c.received_at)
        .where(mine, deliveries.c.folded_at.is_(None))
        .order_by(deliveries.c.id)
    ).scalars()
    arrived = [float(at) for at in unfolded]
    conn.execute(deliveries.delete().where(mine))
    return arrived


def purge(conn: Connection, before: float, limit: int) -> int:
    """Delete up to ``limit`` folded deliveries that arrived before ``before``; unfolded
    ones stay."""
    oldest = (
        sa.select(deliveries.c.id)
        .where(deliveries.c.received_at < before, deliveries.c.folded_at.is_not(None))
        .order_by(deliveries.c.id)
        .limit(limit)
    )
    return conn.execute(deliveries.delete().where(deliveries.c.id.in_(oldest))).rowcount
