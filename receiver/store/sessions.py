"""Dashboard sessions signed out: a cookie copied before sign-out opens nothing after it."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from receiver.store.purging import delete_batch
from receiver.store.schema import revoked_sessions


def revoke(conn: Connection, sid: str, until: float) -> None:
    """Revoke session ``sid`` (kept until ``until``, when its cookie lapses anyway)."""
    if not revoked(conn, sid):
        conn.execute(revoked_sessions.insert().values(sid=sid, until=until))


def revoked(conn: Connection, sid: str) -> bool:
    query = sa.select(revoked_sessions.c.sid).where(revoked_sessions.c.sid == sid)
    return conn.execute(query).first() is not None


def purge(conn: Connection, before: float, limit: int) -> int:
    """Forget up to ``limit`` revocations of sessions that ended before ``before``."""
    return delete_batch(conn, revoked_sessions, limit, revoked_sessions.c.until < before)
