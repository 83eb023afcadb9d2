"""Folding latency under load: from a webhook's commit to the inbox to its fold by a worker.

The web (gunicorn, the project's settings) takes webhooks from wrk at about half of
what it sustains, on PostgreSQL, while one `poller` process folds the inbox; GBG is
the simulator (a folded delivery asks for a confirming fetch a second later). Each
delivery's `folded_at - received_at` is read from the store afterwards.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.harness import (
    PYTHON,
    environment,
    free_port,
    gunicorn,
    process,
    simulator,
    summary,
    wait_http,
    wrk,
)
from receiver.migrations import upgrade
from receiver.store.engine import make_engine
from receiver.store.schema import deliveries, metadata

SECONDS = 8
CONNECTIONS = 16
DELAY_MS = 40  # per connection between requests: 16 connections, about 300-400 webhooks/s


def measure(database_url: str, out: Path) -> dict[str, Any]:
    engine = make_engine(database_url)
    upgrade(engine)
    with engine.begin() as conn:  # the ingest runs left their deliveries behind
        for name in ("deliveries", "events", "outbox", "instances"):
            conn.execute(metadata.tables[name].delete())
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhooks/gbg"
    with simulator() as (_sim, gbg):
        env = environment(
            database_url, RECEIVER_BIND=f"127.0.0.1:{port}", RECEIVER_CONFIRM_DELAY="1", **gbg
        )
        with (
            gunicorn("wsgi:app", env, out / "fold-web.log"),
            process([PYTHON, "-m", "receiver", "poller"], env, out / "fold-poller.log"),
        ):
            wait_http(url)
            load = wrk(url, seconds=SECONDS, connections=CONNECTIONS, run="fold", delay_ms=DELAY_MS)
            deadline = time.monotonic() + 30
            while unfolded(engine) and time.monotonic() < deadline:
                time.sleep(0.1)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(deliveries.c.received_at, deliveries.c.folded_at)).all()
    engine.dispose()
    waits = [f - r for r, f in rows if f is not None]
    return {"rps": load["rps"], "webhooks": len(rows), **summary(waits, len(rows))}


def unfolded(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(deliveries.c.folded_at.is_(None))
            ).scalar_one()
        )
