"""Retention's deletes: a batch at a time, each its own short transaction, so a long
purge never keeps a webhook waiting for the writer."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def delete_batch(conn: Connection, table: sa.Table, limit: int, *where: Any) -> int:
    """Delete up to ``limit`` rows of ``table`` that match ``where``, in key order;
    answer how many went."""
    key = next(iter(table.primary_key.columns))
    chosen = sa.select(key).where(*where).order_by(key).limit(limit)
    return int(conn.execute(table.delete().where(key.in_(chosen))).rowcount)
