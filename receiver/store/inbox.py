"""The inbox: webhook deliveries as they arrived, appended by the web, folded by workers.

A delivery is committed before its 202 and folded into its instance later, in
batches; ``folded_at`` marks what is done. Several workers take disjoint batches (SKIP
LOCKED on PostgreSQL; SQLite's single writer serialises them anyway). A delivery that
cannot be folded is tried alone a few times, then set aside (``quarantined_at``): out of
the inbox, kept with its reason, until an operator folds it again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from receiver.store.purging import delete_batch
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
# In the inbox: not folded yet, and not set aside.
WAITING = sa.and_(deliveries.c.folded_at.is_(None), deliveries.c.quarantined_at.is_(None))
_TAKE = sa.select(
    deliveries.c.id, deliveries.c.instance_id, deliveries.c.received_at, deliveries.c.claim
).with_for_update(skip_locked=True)
_UNFOLDED = _TAKE.where(WAITING).order_by(deliveries.c.id).limit(sa.bindparam("limit"))
_ONE = _TAKE.where(WAITING, deliveries.c.id == sa.bindparam("id"))
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


def take_one(conn: Connection, delivery_id: int) -> list[Unfolded]:
    """That delivery alone, locked, if it is still in the inbox."""
    return [Unfolded(*row) for row in conn.execute(_ONE, {"id": delivery_id})]


def waiting_ids(conn: Connection, limit: int) -> list[int]:
    """The ids of the oldest deliveries in the inbox."""
    query = sa.select(deliveries.c.id).where(WAITING).order_by(deliveries.c.id).limit(limit)
    return list(conn.execute(query).scalars())


def mark_folded(conn: Connection, ids: list[int], now: float) -> None:
    conn.execute(_MARK, {"ids": ids, "now": now})


def fold_failed(conn: Connection, delivery_id: int, error: str, now: float, tries: int) -> bool:
    """Count a failed try at folding the delivery, with its reason; set it aside once it
    has failed ``tries`` times. Answer whether it was set aside now."""
    conn.execute(
        deliveries.update()
        .where(deliveries.c.id == delivery_id, WAITING)
        .values(fold_tries=deliveries.c.fold_tries + 1, fold_error=error[:256])
    )
    return bool(
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id == delivery_id, WAITING, deliveries.c.fold_tries >= tries)
            .values(quarantined_at=now)
        ).rowcount
    )


def quarantined(conn: Connection, after: int, limit: int) -> list[dict[str, Any]]:
    """Deliveries set aside, oldest first, after the id ``after``."""
    rows = conn.execute(
        sa.select(
            deliveries.c.id,
            deliveries.c.instance_id,
            deliveries.c.received_at,
            deliveries.c.fold_tries,
            deliveries.c.fold_error,
            deliveries.c.quarantined_at,
        )
        .where(deliveries.c.quarantined_at.is_not(None), deliveries.c.id > after)
        .order_by(deliveries.c.id)
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows]


def refold(conn: Connection, delivery_id: int | None) -> int:
    """Put deliveries set aside (that one, or all) back in the inbox, with fresh tries;
    answer how many. Asked again for one already back and not yet folded: 1 (a retry)."""
    query = (
        deliveries.update()
        .where(deliveries.c.quarantined_at.is_not(None))
        .values(quarantined_at=None, fold_tries=0, fold_error=None)
    )
    if delivery_id is None:
        return conn.execute(query).rowcount
    conn.execute(query.where(deliveries.c.id == delivery_id))
    waiting = sa.select(deliveries.c.id).where(deliveries.c.id == delivery_id, WAITING)
    return len(conn.execute(waiting).all())  # back now, or already back before


def for_instance(
    conn: Connection,
    instance_id: str,
    *,
    after: int = 0,
    limit: int | None = None,
    newest: bool = False,
) -> list[dict[str, Any]]:
    """The instance's deliveries with an id above ``after``, oldest first, up to ``limit``
    (None: all); with ``newest``, the latest ``limit`` of them instead (still oldest first)."""
    query = sa.select(deliveries).where(
        deliveries.c.instance_id == instance_id, deliveries.c.id > after
    )
    order = deliveries.c.id.desc() if newest else deliveries.c.id
    rows = [dict(r._mapping) for r in conn.execute(query.order_by(order).limit(limit))]
    return rows[::-1] if newest else rows


def depth(conn: Connection) -> tuple[int, float | None]:
    """How many deliveries wait to be folded, and when the oldest of them arrived."""
    count, oldest = conn.execute(
        sa.select(sa.func.count(), sa.func.min(deliveries.c.received_at)).where(WAITING)
    ).one()
    return int(count), oldest


def waiting_for(conn: Connection, instance_id: str) -> int:
    """How many of the instance's deliveries wait in the inbox."""
    query = sa.select(sa.func.count()).where(deliveries.c.instance_id == instance_id, WAITING)
    return int(conn.execute(query).scalar_one())


def quarantined_count(conn: Connection) -> int:
    query = sa.select(sa.func.count()).where(deliveries.c.quarantined_at.is_not(None))
    return int(conn.execute(query).scalar_one())


def erase(conn: Connection, instance_id: str) -> list[float]:
    """Delete the instance's deliveries; answer when the ones still in the inbox arrived
    (the caller folds those, so erasing never loses what a 202 acknowledged)."""
    mine = deliveries.c.instance_id == instance_id
    unfolded = conn.execute(
        sa.select(deliveries.c.received_at).where(mine, WAITING).order_by(deliveries.c.id)
    ).scalars()
    arrived = [float(at) for at in unfolded]
    conn.execute(deliveries.delete().where(mine))
    return arrived


def purge(conn: Connection, before: float, limit: int) -> int:
    """Delete up to ``limit`` folded deliveries that arrived before ``before``; unfolded
    ones stay."""
    return delete_batch(
        conn,
        deliveries,
        limit,
        deliveries.c.received_at < before,
        deliveries.c.folded_at.is_not(None),
    )
