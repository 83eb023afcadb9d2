"""Instance rows: load and lock, insert and save, pages, and the workers' claims and leases.

Each function runs on a connection inside a transaction the caller opened, so a use
case can lock, decide and save in one. Claims lease due rows to one worker (FOR UPDATE
SKIP LOCKED on PostgreSQL; SQLite's writer holds the whole database anyway).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from receiver.domain.model import IN_PROGRESS, Instance
from receiver.store.engine import Raced
from receiver.store.inbox import WAITING
from receiver.store.schema import deliveries, instances

FIELDS = tuple(f.name for f in fields(Instance))

# Statements built once: hot paths should not pay for building them per call.
_LOCK = (
    sa.select(instances)
    .where(instances.c.instance_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(instances.c.instance_id)
    .with_for_update()
)
_UPDATE = (
    instances.update()
    .where(instances.c.instance_id == sa.bindparam("b_instance_id"))
    .values({c: sa.bindparam("b_" + c) for c in FIELDS if c != "instance_id"})
)
_MINE = instances.c.lease_owner == sa.bindparam("b_owner")
_UPDATE_RELEASING = _UPDATE.values(
    lease_owner=sa.case((_MINE, None), else_=instances.c.lease_owner),
    lease_expires_at=sa.case((_MINE, None), else_=instances.c.lease_expires_at),
)
_INSERT = {
    name: dialect.insert(instances)
    .on_conflict_do_nothing()
    .returning(instances.c.instance_id)  # executemany reports no rowcount on psycopg
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def lock(conn: Connection, ids: list[str]) -> dict[str, tuple[Instance, str | None]]:
    """Lock the rows of ``ids`` that exist, in id order (so no two writers deadlock);
    answer each instance with the owner of its lease, if one is held."""
    rows = conn.execute(_LOCK, {"ids": sorted(ids)}).all()
    return {r.instance_id: (to_instance(r), r.lease_owner) for r in rows}


def insert(conn: Connection, created: list[Instance]) -> None:
    """Insert new instances; raise Raced if another transaction created one first."""
    inserted = conn.execute(_INSERT[conn.dialect.name], [to_row(i) for i in created]).all()
    if len(inserted) != len(created):
        raise Raced


def save(conn: Connection, changed: list[Instance], *, release: str | None = None) -> None:
    """Write changed instances; with ``release``, also give back that owner's leases."""
    rows = [{"b_" + k: v for k, v in to_row(i).items()} for i in changed]
    if release is None:
        conn.execute(_UPDATE, rows)
    else:
        conn.execute(_UPDATE_RELEASING, [r | {"b_owner": release} for r in rows])


def get(conn: Connection, instance_id: str) -> Instance | None:
    row = conn.execute(sa.select(instances).where(instances.c.instance_id == instance_id)).first()
    return to_instance(row) if row else None


def page(
    conn: Connection,
    *,
    status: str | None,
    limit: int,
    after: tuple[float, str] | None,
    reference: str | None = None,
    given_up: bool | None = None,
) -> list[Instance]:
    """Up to ``limit`` instances, newest first, registered before ``after`` (a position)."""
    query = sa.select(instances).order_by(
        instances.c.registered_at.desc(), instances.c.instance_id.desc()
    )
    if status is not None:
        query = query.where(instances.c.status == status)
    if reference is not None:
        query = query.where(instances.c.reference == reference)
    if given_up is not None:
        query = query.where(instances.c.polling_gave_up.is_(given_up))
    if after is not None:
        at, last_id = after
        query = query.where(
            sa.or_(
                instances.c.registered_at < at,
                sa.and_(instances.c.registered_at == at, instances.c.instance_id < last_id),
            )
        )
    return [to_instance(r) for r in conn.execute(query.limit(limit))]


def unleased(now: Any) -> sa.ColumnElement[bool]:
    """Nobody holds the instance: never leased, released, or its lease ran out."""
    return sa.or_(instances.c.lease_expires_at.is_(None), instances.c.lease_expires_at <= now)


def due_selection(now: Any, limit: Any) -> sa.Select[Any]:
    """Unleased instances whose next poll has come, soonest first, read off ix_instances_due.

    An instance with a delivery still in the inbox waits for it to be folded: polled
    now, it would be polled as one that had no webhook. One set aside holds nothing up.
    """
    waiting = (
        sa.select(deliveries.c.id)
        .where(deliveries.c.instance_id == instances.c.instance_id, WAITING)
        .exists()
    )
    return (
        sa.select(instances.c.instance_id)
        .where(instances.c.next_poll_at <= now, unleased(now), ~waiting)
        .order_by(instances.c.next_poll_at)
        .limit(limit)
    )


_LEASE: dict[str, Any] = {
    "lease_owner": sa.bindparam("owner"),
    "lease_expires_at": sa.bindparam("until"),
}
_CLAIM_DUE = (
    instances.update()
    .where(
        instances.c.instance_id.in_(
            due_selection(sa.bindparam("now"), sa.bindparam("limit"))
            .with_for_update(skip_locked=True)  # SQLite's one writer holds it all anyway
            .scalar_subquery()
        )
    )
    .values(_LEASE)
    .returning(*instances.c)
)


def claim_due(conn: Connection, owner: str, now: float, limit: int, lease: float) -> list[Instance]:
    """Lease up to ``limit`` due instances to ``owner``; nobody else fetches them now."""
    rows = conn.execute(
        _CLAIM_DUE, {"now": now, "limit": limit, "owner": owner, "until": now + lease}
    )
    return [to_instance(r) for r in rows]


def claim(conn: Connection, instance_id: str, owner: str, now: float, lease: float) -> bool:
    """Lease one instance whatever its schedule (an operator's poll), if nobody holds it."""
    leased = conn.execute(
        instances.update()
        .where(instances.c.instance_id == instance_id, unleased(now))
        .values(lease_owner=owner, lease_expires_at=now + lease)
    )
    return leased.rowcount == 1


def release(conn: Connection, owner: str, instance_id: str | None = None) -> int:
    """Give back the leases ``owner`` still holds (all, or one instance's)."""
    where = instances.c.lease_owner == owner
    if instance_id is not None:
        where = sa.and_(where, instances.c.instance_id == instance_id)
    result = conn.execute(
        instances.update().where(in_id_order(where)).values(lease_owner=None, lease_expires_at=None)
    )
    return result.rowcount


def past_ttl(conn: Connection, before: float, limit: int) -> list[str]:
    """Unfinished instances registered before ``before``."""
    return list(
        conn.execute(
            sa.select(instances.c.instance_id)
            .where(instances.c.status == IN_PROGRESS, instances.c.registered_at <= before)
            .limit(limit)
        ).scalars()
    )


def leases(conn: Connection) -> list[tuple[str, str, float]]:
    rows = conn.execute(
        sa.select(
            instances.c.instance_id, instances.c.lease_owner, instances.c.lease_expires_at
        ).where(instances.c.lease_owner.is_not(None))
    ).all()
    return [(r.instance_id, r.lease_owner, r.lease_expires_at) for r in rows]


# What an instance holds about the person checked; erasure and retention null these.
PERSONAL = (
    "reference",
    "instance_url",  # the person's own link to their journey
    "outcome",
    "result",
    "journey",
    "state",
    "webhook_claim",
)


def erase(conn: Connection, instance_id: str) -> bool:
    """Null the instance's personal fields; its status, times and events stay."""
    return bool(
        conn.execute(
            instances.update()
            .where(instances.c.instance_id == instance_id)
            .values(dict.fromkeys(PERSONAL))
        ).rowcount
    )


def forget(conn: Connection, before: float) -> int:
    """Retention: null the personal fields of instances finished before ``before``, and
    the state documents of unfinished ones last changed before then."""
    old = instances.c.updated_at < before
    kept = sa.or_(*(instances.c[c].is_not(None) for c in PERSONAL))
    finished = conn.execute(
        instances.update()
        .where(in_id_order(sa.and_(old, instances.c.status != IN_PROGRESS, kept)))
        .values(dict.fromkeys(PERSONAL))
    ).rowcount
    stale = sa.and_(old, instances.c.status == IN_PROGRESS, instances.c.state.is_not(None))
    unfinished = conn.execute(
        instances.update().where(in_id_order(stale)).values(state=None)
    ).rowcount
    return int(finished + unfinished)


def in_id_order(where: Any) -> sa.ColumnElement[bool]:
    """Rows matching ``where``, locked in id order first: every transaction that locks
    several instances takes them in that order, so no two can deadlock."""
    ordered = (
        sa.select(instances.c.instance_id)
        .where(where)
        .order_by(instances.c.instance_id)
        .with_for_update()
    )
    return instances.c.instance_id.in_(ordered.scalar_subquery())


def renew(conn: Connection, owner: str, until: float) -> int:
    """Extend every lease ``owner`` holds to ``until`` (work on them is still running)."""
    return conn.execute(
        instances.update()
        .where(in_id_order(instances.c.lease_owner == owner))
        .values(lease_expires_at=until)
    ).rowcount


def resume_given_up(conn: Connection, now: float, instance_id: str | None = None) -> int:
    """Poll every unfinished instance that gave up (or only ``instance_id``, if it did)
    again, from now, with a fresh budget."""
    given_up = sa.and_(instances.c.polling_gave_up.is_(True), instances.c.status == IN_PROGRESS)
    if instance_id is not None:
        given_up = sa.and_(given_up, instances.c.instance_id == instance_id)
    return conn.execute(
        instances.update()
        .where(in_id_order(given_up))
        .values(polling_gave_up=False, poll_errors=0, next_poll_at=now, updated_at=now)
    ).rowcount


def to_instance(row: Any) -> Instance:
    m = row._mapping
    return Instance(**{name: m[name] for name in FIELDS})


def to_row(instance: Instance) -> dict[str, Any]:
    return {name: getattr(instance, name) for name in FIELDS}
