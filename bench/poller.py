"""Poller throughput against the ideal min(rate limit, concurrency / latency), on PostgreSQL."""

from __future__ import annotations

import threading
import time
from bisect import bisect_right
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.harness import PYTHON, environment, process, rss_kib
from receiver.migrations import upgrade
from receiver.store.engine import make_engine
from receiver.store.schema import instances, metadata, rate_limits
from receiver.testing.answers import SimInstance
from receiver.testing.simulator import Simulator

INSTANCES = 10_000
WINDOW = 12.0  # seconds of steady state measured per configuration


def load_due(engine: sa.Engine, count: int, now: float) -> list[str]:
    """``count`` unfinished instances, all due now, written in bulk."""
    ids = [f"due-{n:06d}" for n in range(count)]
    with engine.begin() as conn:
        for name in ("deliveries", "events", "instances"):
            conn.execute(metadata.tables[name].delete())
        conn.execute(rate_limits.update().values(tat=0.0))
        conn.execute(
            instances.insert(),
            [
                {
                    "instance_id": i,
                    "status": "in_progress",
                    "source": "webhook",
                    "registered_at": now - 60,
                    "updated_at": now - 60,
                    "webhook_received_at": now - 2,
                    "next_poll_at": now - 1,
                    "poll_errors": 0,
                    "polling_gave_up": False,
                }
                for i in ids
            ],
        )
    return ids


def measure(
    database_url: str, out: Path, latency: float, concurrency: int, rate: float
) -> dict[str, Any]:
    engine = make_engine(database_url)
    upgrade(engine)
    sim = Simulator()
    server = sim.server()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    now = time.time()
    for iid in load_due(engine, INSTANCES, now):
        sim.instances[iid] = SimInstance(
            iid, "bench@1", now - 60, status="Completed", completed=now - 5
        )
    sim.latency = latency
    env = environment(
        database_url,
        RECEIVER_GBG_BASE_URL=base,
        RECEIVER_GBG_TOKEN_URL=f"{base}/as/token.oauth2",
        RECEIVER_GBG_CLIENT_ID="sim-client",
        RECEIVER_GBG_CLIENT_SECRET="sim-secret",
        RECEIVER_POLL_CONCURRENCY=str(concurrency),
        RECEIVER_GBG_RATE_LIMIT=str(rate),
    )
    name = f"poller-l{int(latency * 1000)}-c{concurrency}-r{int(rate)}"
    rss = []
    try:
        with process([PYTHON, "-m", "receiver", "poller"], env, out / f"{name}.log") as proc:
            deadline = time.monotonic() + 30
            while not sim.fetches() and time.monotonic() < deadline:
                time.sleep(0.05)
            started = time.time()
            time.sleep(2)
            rss.append(rss_kib(proc.pid))
            time.sleep(max(0.0, started + WINDOW - time.time()))
            rss.append(rss_kib(proc.pid))
    finally:
        server.shutdown()
        server.server_close()
        engine.dispose()
    starts = sorted(c["start"] for c in sim.fetches())
    in_window = [s for s in starts if started <= s < started + WINDOW]
    busiest = max((bisect_right(starts, s + 1.0) - i for i, s in enumerate(starts)), default=0)
    achieved = len(in_window) / WINDOW
    ideal = min(rate, concurrency / latency)
    return {
        "latency_ms": latency * 1000,
        "concurrency": concurrency,
        "rate_limit": rate,
        "achieved": achieved,
        "ideal": ideal,
        "ratio": achieved / ideal,
        "max_in_1s": busiest,
        "fetches": len(starts),
        "rss_kib": rss,
        "token_requests": sim.token_requests,
    }
