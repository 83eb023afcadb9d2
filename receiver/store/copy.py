"""Copy a whole store into an empty one (the move from SQLite to PostgreSQL), or a
SQLite store into a backup file."""

from __future__ import annotations

import contextlib
import os
import sqlite3

import sqlalchemy as sa

from receiver.store.engine import Database
from receiver.store.schema import (
    attempts,
    deliveries,
    events,
    idempotency_keys,
    instances,
    outbox,
    rate_limits,
    revoked_sessions,
)


def copy_from(source: Database, target: Database, batch: int = 1000) -> dict[str, int]:
    """Copy every row of ``source`` into the empty ``target`` (SQLite -> PostgreSQL).

    Keys are kept, so event ``seq`` values and delivery ids stay what readers saw. The
    workers' heartbeats stay behind: they were the old store's processes.
    """
    copied: dict[str, int] = {}
    with target.write() as conn:
        if conn.execute(sa.select(sa.func.count()).select_from(instances)).scalar():
            raise ValueError("the target store already has instances")
        tables = (
            instances,
            deliveries,
            events,
            outbox,
            attempts,
            rate_limits,
            revoked_sessions,
            idempotency_keys,
        )
        for table in tables:
            conn.execute(table.delete())
            key = next(iter(table.primary_key.columns))
            copied[table.name], last = 0, None
            while True:
                query = sa.select(table).order_by(key).limit(batch)
                if last is not None:
                    query = query.where(key > last)
                with source.read() as read:
                    rows = [dict(r._mapping) for r in read.execute(query)]
                if not rows:
                    break
                conn.execute(table.insert(), rows)
                copied[table.name] += len(rows)
                last = rows[-1][key.name]
        if target.is_postgres:  # the next seq and id continue after the copied ones
            for column in (events.c.seq, deliveries.c.id, attempts.c.id):
                highest = sa.select(sa.func.max(column)).scalar_subquery()
                sequence = sa.func.pg_get_serial_sequence(column.table.name, column.name)
                conn.execute(sa.select(sa.func.setval(sequence, sa.func.greatest(highest, 1))))
    return copied


def backup(source: Database, path: str) -> int:
    """Copy the SQLite store, while it serves, into a new file at ``path`` readable by its
    owner alone (SQLite's online backup: a consistent copy, writers go on); answer its
    size. PostgreSQL is backed up with pg_dump instead (deploy/README.md)."""
    database = source.engine.url.database
    if source.is_postgres or not database or database == ":memory:":
        raise ValueError("backup copies a SQLite store; back PostgreSQL up with pg_dump")
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # never over one
    with (
        contextlib.closing(sqlite3.connect(database)) as live,
        contextlib.closing(sqlite3.connect(path)) as copy,
    ):
        live.backup(copy)
    return os.path.getsize(path)
