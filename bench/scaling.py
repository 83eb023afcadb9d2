"""Claim cost against the number of stored instances (mostly finished or not yet due)."""

from __future__ import annotations

import io
import time
from statistics import median
from typing import Any

import sqlalchemy as sa

from receiver.migrations import upgrade
from receiver.store import Store
from receiver.store.engine import Database, make_engine
from receiver.store.instances import due_selection
from receiver.store.schema import instances, metadata

SIZES = (1_000, 100_000, 1_000_000)
DUE = 100
REPEAT = 100


def fill(engine: sa.Engine, total: int, now: float) -> None:
    """``total`` instances: DUE due now, 1 % due later, the rest finished."""
    with engine.begin() as conn:
        for name in ("deliveries", "events", "instances"):
            conn.execute(metadata.tables[name].delete())
    rows = []
    for n in range(total):
        if n < DUE:
            status, next_at = "in_progress", now - 1
        elif n % 100 == 0:
            status, next_at = "in_progress", now + 3600
        else:
            status, next_at = "completed", None
        rows.append((f"s-{n:07d}", status, "poll", now - 86400, now - 60, next_at, 0, False))
    columns = (
        "instance_id",
        "status",
        "source",
        "registered_at",
        "updated_at",
        "next_poll_at",
        "poll_errors",
        "polling_gave_up",
    )
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            buffer = io.StringIO(
                "".join(
                    "\t".join(
                        "\\N" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                        for v in row
                    )
                    + "\n"
                    for row in rows
                )
            )
            with cursor.copy(f"COPY instances ({', '.join(columns)}) FROM STDIN") as copy:
                copy.write(buffer.read())
            cursor.execute("ANALYZE instances")
        else:
            cursor.executemany(
                f"INSERT INTO instances ({', '.join(columns)}) VALUES ({', '.join('?' * 8)})", rows
            )
            cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def measure(database_url: str) -> dict[str, Any]:
    engine = make_engine(database_url)
    upgrade(engine)
    store = Store(Database(engine))
    results: dict[str, Any] = {"sizes": {}}
    now = time.time()
    for size in SIZES:
        fill(engine, size, now)
        timings = []
        for _ in range(REPEAT):
            started = time.perf_counter()
            claimed = store.claim_due("bench", now, 8, 60)
            timings.append(time.perf_counter() - started)
            assert len(claimed) == 8
            store.release("bench")
        results["sizes"][size] = median(timings) * 1000
    results["plan"] = plan(engine, now)
    with engine.begin() as conn:
        conn.execute(instances.delete())
    engine.dispose()
    return results


def plan(engine: sa.Engine, now: float) -> str:
    due = due_selection(now, 8)
    sql = str(due.compile(engine, compile_kwargs={"literal_binds": True}))
    prefix = "EXPLAIN" if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN"
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"{prefix} {sql}").all()
    return "\n".join(str(r[-1]) for r in rows)
