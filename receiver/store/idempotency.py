"""Idempotency keys of journey starts: a key is claimed before GBG is asked, completed
with the instance it started, and given back if the start failed; a day later it is
forgotten."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from receiver.store.engine import Raced
from receiver.store.purging import delete_batch
from receiver.store.schema import idempotency_keys as keys

LIFETIME = 86400.0  # seconds a key answers with its first result
_INSERT = {
    name: dialect.insert(keys).on_conflict_do_nothing().returning(keys.c.key)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def claim(conn: Connection, key: str, body_hash: str, now: float) -> tuple[str, str | None] | None:
    """Claim ``key`` for a new start (None), or answer what holds it already: its body's
    hash and its instance (None while that first start is under way)."""
    conn.execute(keys.delete().where(keys.c.key == key, keys.c.created_at < now - LIFETIME))
    held = conn.execute(
        sa.select(keys.c.body_hash, keys.c.instance_id).where(keys.c.key == key).with_for_update()
    ).first()
    if held is not None:
        return held.body_hash, held.instance_id
    insert = _INSERT[conn.dialect.name].values(key=key, body_hash=body_hash, created_at=now)
    if conn.execute(insert).first() is None:
        raise Raced  # claimed by another request meanwhile: run again, and see it
    return None


def complete(conn: Connection, key: str, instance_id: str) -> None:
    conn.execute(keys.update().where(keys.c.key == key).values(instance_id=instance_id))


def give_back(conn: Connection, key: str) -> None:
    """The start failed: a retry with the key may try again."""
    conn.execute(keys.delete().where(keys.c.key == key, keys.c.instance_id.is_(None)))


def purge(conn: Connection, before: float, limit: int) -> int:
    """Forget up to ``limit`` keys older than a day (``before`` is retention's cut-off,
    always older)."""
    return delete_batch(conn, keys, limit, keys.c.created_at < before)
