"""Poller throughput against the ideal min(rate limit, concurrency / latency), on PostgreSQL."""

from __future__ import annotations

import itertools
import os
import threading
import time
from bisect import bisect_right
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from bench.harness import PYTHON, environment, process, rss_kib, simulator
from receiver.migrations import upgrade
from receiver.store.engine import make_engine
from receiver.store.schema import instances, metadata, rate_limits
from receiver.testing.answers import SimInstance

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
    database_url: str, out: Path, latency: float, concurrency: int, rate: float, workers: int = 1
) -> dict[str, Any]:
    engine = make_engine(database_url)
    upgrade(engine)
    with simulator() as (sim, gbg):
        now = time.time()
        for iid in load_due(engine, INSTANCES, now):
            sim.instances[iid] = SimInstance(
                iid, "bench@1", now - 60, status="Completed", completed=now - 5
            )
        sim.latency = latency
        env = environment(
            database_url,
            RECEIVER_POLL_CONCURRENCY=str(concurrency),
            RECEIVER_GBG_RATE_LIMIT=str(rate),
            **gbg,
        )
        name = f"poller-l{int(latency * 1000)}-c{concurrency}-r{int(rate)}-w{workers}"
        rss = []
        with ExitStack() as stack:
            procs = [
                stack.enter_context(
                    process([PYTHON, "-m", "receiver", "poller"], env, out / f"{name}-{n}.log")
                )
                for n in range(workers)
            ]
            deadline = time.monotonic() + 30
            while not sim.fetches() and time.monotonic() < deadline:
                time.sleep(0.05)
            started = time.time()
            cpu = -sum(cpu_seconds(p.pid) for p in procs)
            time.sleep(2)
            rss.append(rss_kib(procs[0].pid))
            time.sleep(max(0.0, started + WINDOW - time.time()))
            rss.append(rss_kib(procs[0].pid))
            cpu += sum(cpu_seconds(p.pid) for p in procs)
    engine.dispose()
    starts = sorted(c["start"] for c in sim.fetches())
    in_window = [s for s in starts if started <= s < started + WINDOW]
    busiest = max((bisect_right(starts, s + 1.0) - i for i, s in enumerate(starts)), default=0)
    achieved = len(in_window) / WINDOW
    ideal = min(rate, workers * concurrency / latency)
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
        "workers": workers,
        "overlapping": overlapping(sim.fetches()),
        "cpu_ms_per_fetch": cpu / max(1, len(in_window)) * 1000,
    }


def overlapping(fetches: list[dict[str, Any]]) -> int:
    """Fetches of an instance that began before its previous fetch had ended."""
    by_instance: dict[str, list[dict[str, Any]]] = {}
    for f in fetches:
        by_instance.setdefault(f["instanceId"], []).append(f)
    count = 0
    for calls in by_instance.values():
        calls.sort(key=lambda c: c["start"])
        count += sum(1 for a, b in itertools.pairwise(calls) if b["start"] < a["end"])
    return count


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stand_in_alone(latency: float, concurrency: int, seconds: float = 5.0) -> float:
    """Fetches/s the GBG stand-in serves by itself to ``concurrency`` plain HTTP clients."""
    with simulator() as (sim, gbg):
        now = time.time()
        sim.instances["alone"] = SimInstance("alone", "bench@1", now - 60, status="Completed")
        sim.latency = latency
        token = requests.post(
            gbg["RECEIVER_GBG_TOKEN_URL"],
            data={
                "grant_type": "client_credentials",
                "scope": "gbg.token",
                "client_id": sim.client_id,
                "client_secret": sim.client_secret,
            },
            timeout=10,
        ).json()["access_token"]
        stop = time.monotonic() + seconds
        counts = [0] * concurrency

        def client(k: int) -> None:
            with requests.Session() as session:
                session.trust_env = False
                session.headers["Authorization"] = f"Bearer {token}"
                while time.monotonic() < stop:
                    session.post(
                        gbg["RECEIVER_GBG_BASE_URL"] + "/v2/captain/journey/state/fetch",
                        json={"instanceId": "alone"},
                        timeout=10,
                    )
                    counts[k] += 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return sum(counts) / seconds
