"""Downstream notifications: GBG's "Completed" to the application's verified message, and
forwarding throughput with one and two workers (PostgreSQL)."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    PYTHON,
    call,
    environment,
    free_port,
    gbg_settings,
    process,
    summary,
    wait_http,
)
from receiver import usecases
from receiver.domain.model import COMPLETED, Fetched, GbgState, Registered
from receiver.domain.schedule import Policy
from receiver.migrations import upgrade
from receiver.store import Store
from tests.appserver import SECRET, App, running

JOURNEYS = 100
MESSAGES = 2000


def latency(out: Path) -> dict[str, Any]:
    """serve + simulator on SQLite, defaults but for the webhook's confirm delay."""
    port, sim_port = free_port(), free_port()
    with running(App()) as app:
        env = environment(
            f"sqlite:///{out / 'forward.db'}",
            RECEIVER_BIND=f"127.0.0.1:{port}",
            **gbg_settings(f"http://127.0.0.1:{sim_port}"),
            RECEIVER_FORWARD_URL=app.url,
            RECEIVER_FORWARD_SECRET=SECRET,
        )
        migrate = [sys.executable, "-m", "receiver", "migrate"]
        subprocess.run(migrate, env=env, check=True, capture_output=True)
        sim = f"http://127.0.0.1:{sim_port}"
        rng = random.Random(11)
        with process([PYTHON, "-m", "receiver", "serve", "--simulator"], env, out / "fw.log"):
            wait_http(f"http://127.0.0.1:{port}/readyz")
            wait_http(sim + "/_sim/calls")
            ids = []
            for _ in range(JOURNEYS):
                ends = rng.uniform(1.0, 3.0)
                spec = {"endsIn": ends, "webhookIn": ends - 0.05}
                ids.append(call("POST", f"{sim}/_sim/journeys", spec)["instanceId"])
                time.sleep(0.02)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(app.delivered()) < JOURNEYS:
                time.sleep(0.2)
            calls = call("GET", f"{sim}/_sim/calls")["calls"]
    answered = {}  # the end of the fetch that answered Completed, per instance
    for c in calls:
        if c["kind"] == "fetch" and c.get("answer") == "Completed":
            answered.setdefault(c["instanceId"], c["end"])
    arrived = {r.body["data"]["instance"]["instanceId"]: r.at for r in app.delivered()}
    waits = [arrived[i] - answered[i] for i in ids if i in arrived and i in answered]
    return summary(waits, JOURNEYS) | {"unverified": app.unverified}


def throughput(pg_url: str, out: Path, workers: int) -> dict[str, Any]:
    """MESSAGES pending in the outbox, then ``workers`` pollers drain it to a fast app."""
    store = Store.from_url(pg_url)
    upgrade(store.engine)
    with store.engine.begin() as conn:
        for table in ("outbox", "events", "instances", "deliveries"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    now, done = time.time(), GbgState(COMPLETED, "Completed", outcome="Of Age")
    ids = [f"tp-{n}" for n in range(MESSAGES)]
    for start in range(0, MESSAGES, 500):
        batch = ids[start : start + 500]
        changes = [(Registered(i), now) for i in batch] + [(Fetched(i, done), now) for i in batch]
        usecases.fold(store, Policy(), changes, forward=True)
    with running(App()) as app:
        env = environment(
            pg_url,
            RECEIVER_GBG_BASE_URL="http://127.0.0.1:9",
            RECEIVER_GBG_TOKEN_URL="http://127.0.0.1:9/token",
            RECEIVER_GBG_CLIENT_ID="c",
            RECEIVER_GBG_CLIENT_SECRET="s",
            RECEIVER_FORWARD_URL=app.url,
            RECEIVER_FORWARD_SECRET=SECRET,
        )
        logs = [out / f"fw-worker-{workers}-{n}.log" for n in range(workers)]
        started = time.monotonic()
        procs = [process([PYTHON, "-m", "receiver", "poller"], env, log) for log in logs]
        for p in procs:
            p.__enter__()
        try:
            while (
                store.snapshot(time.time())["outbox_pending"] and time.monotonic() - started < 120
            ):
                time.sleep(0.05)
            took = time.monotonic() - started
        finally:
            for p in procs:
                p.__exit__(None, None, None)
    first = min(r.started for r in app.received)
    last = max(r.ended for r in app.received)
    store.engine.dispose()
    return {
        "workers": workers,
        "messages": len({r.webhook_id for r in app.delivered()}),
        "seconds": took,
        "per_second": MESSAGES / (last - first),
    }
