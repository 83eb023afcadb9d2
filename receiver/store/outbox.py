"""The outbox: one message per status change, written in its event's transaction and
sent by the workers, in ``seq`` order per instance, at least once.

A message is claimed with a lease (FOR UPDATE SKIP LOCKED on PostgreSQL), so workers
running at once never send one message twice at the same time; it is due only while no
earlier message of its instance is still pending, so one instance's messages arrive in
order while other instances' flow past a slow or failing one. Never an older status
after a newer: once a message is delivered, the earlier ones of its instance that failed
for good are superseded, and no message is replayed after a later one was delivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from receiver.errors import Superseded
from receiver.store import attempts
from receiver.store.purging import delete_batch
from receiver.store.schema import MAX_ID, outbox

PENDING, DELIVERED, FAILED, SUPERSEDED = "pending", "delivered", "failed", "superseded"
STATUSES = (PENDING, DELIVERED, FAILED, SUPERSEDED)


@dataclass(frozen=True)
class Message:
    seq: int
    instance_id: str
    body: str
    status: str
    created_at: float
    attempts: int
    next_attempt_at: float | None
    last_attempt_at: float | None
    last_error: str | None
    delivered_at: float | None


_FIELDS = [outbox.c[f] for f in Message.__dataclass_fields__]
_EARLIER = outbox.alias("earlier")


def enqueue(conn: Connection, messages: list[tuple[int, str, str]], now: float) -> None:
    """Add (seq, instance id, body) messages, due at once."""
    conn.execute(
        outbox.insert(),
        [
            {
                "seq": seq,
                "instance_id": instance_id,
                "body": body,
                "status": PENDING,
                "created_at": now,
                "attempts": 0,
                "next_attempt_at": now,
            }
            for seq, instance_id, body in messages
        ],
    )


def claim(conn: Connection, owner: str, now: float, limit: int, lease: float) -> list[Message]:
    """Lease up to ``limit`` due messages, oldest first, none behind an earlier pending
    message of its own instance."""
    blocked = sa.exists().where(
        _EARLIER.c.instance_id == outbox.c.instance_id,
        _EARLIER.c.status == PENDING,
        _EARLIER.c.seq < outbox.c.seq,
    )
    unleased = sa.or_(outbox.c.lease_expires_at.is_(None), outbox.c.lease_expires_at <= now)
    due = (
        sa.select(outbox.c.seq)
        .where(outbox.c.status == PENDING, outbox.c.next_attempt_at <= now, unleased, ~blocked)
        .order_by(outbox.c.seq)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = conn.execute(
        outbox.update()
        .where(outbox.c.seq.in_(due.scalar_subquery()))
        .values(lease_owner=owner, lease_expires_at=now + lease)
        .returning(*_FIELDS)
    )
    return sorted((Message(*r) for r in rows), key=lambda m: m.seq)


def record(
    conn: Connection,
    seq: int,
    owner: str,
    *,
    now: float,
    error: str | None,
    next_attempt_at: float | None,
) -> bool:
    """Write one attempt's result under ``owner``'s lease: delivered (no error), due
    again at ``next_attempt_at``, or failed (neither). False if the lease was lost."""
    values: dict[str, Any] = {
        "attempts": outbox.c.attempts + 1,
        "last_attempt_at": now,
        "last_error": error[:256] if error else None,
        "lease_owner": None,
        "lease_expires_at": None,
    }
    if error is None:
        values |= {"status": DELIVERED, "delivered_at": now, "next_attempt_at": None}
    elif next_attempt_at is None:
        values |= {"status": FAILED, "next_attempt_at": None}
    else:
        values["next_attempt_at"] = next_attempt_at
    done = conn.execute(
        outbox.update()
        .where(outbox.c.seq == seq, outbox.c.lease_owner == owner)
        .values(values)
        .returning(outbox.c.instance_id)
    ).first()
    if done is None:
        return False
    outcome = "delivered" if error is None else error if next_attempt_at else FAILED
    attempts.record(
        conn,
        [
            {
                "instance_id": done.instance_id,
                "at": now,
                "kind": "forward",
                "outcome": outcome[:32],
                "seq": seq,
            }
        ],
    )
    if error is None:
        conn.execute(
            outbox.update()
            .where(
                outbox.c.instance_id == done.instance_id,
                outbox.c.seq < seq,
                outbox.c.status == FAILED,
            )
            .values(status=SUPERSEDED)
        )
    return True


def release(conn: Connection, owner: str) -> int:
    return conn.execute(
        outbox.update()
        .where(outbox.c.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
    ).rowcount


def replay(conn: Connection, seq: int, now: float) -> Message | None:
    """Send a failed (or delivered) message again, from now, with a fresh schedule; None
    if there is no such message (a seq no column can hold never reaches the database).

    Raises Superseded when a later message of its instance was delivered or is on its
    way: sent now, this one would arrive after it.
    """
    if not 0 < seq <= MAX_ID:
        return None
    message = get(conn, seq)
    if message is None:
        return None
    later = conn.execute(
        sa.select(outbox.c.seq, outbox.c.status)
        .where(
            outbox.c.instance_id == message.instance_id,
            outbox.c.seq > seq,
            sa.or_(outbox.c.status == DELIVERED, outbox.c.lease_owner.is_not(None)),
        )
        .order_by(outbox.c.seq)
        .limit(1)
    ).first()
    if later is not None:
        done = "was delivered" if later.status == DELIVERED else "is on its way"
        newer = f"message {later.seq}, a later status of its instance, {done}"
        raise Superseded(seq, message.instance_id, newer)
    if message.status == SUPERSEDED:
        raise Superseded(seq, message.instance_id, "a later status of its instance was delivered")
    conn.execute(
        outbox.update()
        .where(outbox.c.seq == seq, outbox.c.status != PENDING)
        .values(status=PENDING, attempts=0, next_attempt_at=now, delivered_at=None)
    )
    return get(conn, seq)


def get(conn: Connection, seq: int) -> Message | None:
    row = conn.execute(sa.select(*_FIELDS).where(outbox.c.seq == seq)).first()
    return Message(*row) if row else None


def page(
    conn: Connection, *, status: str | None, limit: int, after: int, instance_id: str | None
) -> list[Message]:
    """Messages after ``after`` (a seq), oldest first, of one status or all, of one
    instance or all."""
    query = sa.select(*_FIELDS).where(outbox.c.seq > after).order_by(outbox.c.seq).limit(limit)
    if status is not None:
        query = query.where(outbox.c.status == status)
    if instance_id is not None:
        query = query.where(outbox.c.instance_id == instance_id)
    return [Message(*r) for r in conn.execute(query)]


def depth(conn: Connection) -> tuple[dict[str, int], float | None]:
    """Messages by status, and when the oldest pending one was written."""
    by_status: dict[str, int] = dict(
        conn.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)).all()
    )
    oldest = conn.execute(
        sa.select(sa.func.min(outbox.c.created_at)).where(outbox.c.status == PENDING)
    ).scalar()
    return {s: int(by_status.get(s, 0)) for s in STATUSES}, oldest


def erase(conn: Connection, instance_id: str) -> int:
    """Delete every message of the instance, whatever its status: each holds what the
    instance said (its reference, outcome and result). One not yet delivered is not sent."""
    return conn.execute(outbox.delete().where(outbox.c.instance_id == instance_id)).rowcount


def purge(conn: Connection, before: float, limit: int) -> int:
    """Delete up to ``limit`` messages written before ``before`` that are done with
    (delivered, or failed for good); pending ones stay."""
    return delete_batch(
        conn, outbox, limit, outbox.c.status != PENDING, outbox.c.created_at < before
    )
