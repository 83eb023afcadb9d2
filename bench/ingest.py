"""Ingest: POST /webhooks/gbg against a bare Flask endpoint on the same gunicorn config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.harness import children, environment, free_port, gunicorn, rss_kib, wait_http, wrk

SECONDS = 8
CONNECTIONS = 16


def measure(
    name: str, app: str, database_url: str, out: Path, *, memory: int = 0
) -> dict[str, Any]:
    """Full load, then half that rate; with ``memory``, worker RSS until that many webhooks."""
    port = free_port()
    env = environment(database_url, RECEIVER_BIND=f"127.0.0.1:{port}")
    if app == "wsgi:app":
        subprocess.run(
            [sys.executable, "-m", "receiver", "migrate"], env=env, check=True, capture_output=True
        )
    url = f"http://127.0.0.1:{port}/webhooks/gbg"
    sent = 0
    with gunicorn(app, env, out / f"ingest-{name}.log") as master:
        wait_http(url)
        sent += wrk(url, seconds=2, connections=CONNECTIONS, run=f"{name}-warm")["requests"]
        full = wrk(url, seconds=SECONDS, connections=CONNECTIONS, run=f"{name}-full")
        half = half_load(url, full, name)
        sent += full["requests"] + half["requests"]
        result: dict[str, Any] = {"name": name, "full": full, "half": half}
        if memory:
            workers = children(master.pid)
            before = {p: rss_kib(p) for p in workers}
            start = sent
            while sent < memory:
                sent += wrk(url, seconds=10, connections=CONNECTIONS, run=f"{name}-m{sent}")[
                    "requests"
                ]
            after = {p: rss_kib(p) for p in workers}
            result["memory"] = {
                "measured_from": start,
                "webhooks": sent,
                "workers": len(workers),
                "rss_before_kib": max(before.values()),
                "rss_after_kib": max(after.values()),
            }
    return result


def half_load(url: str, full: dict[str, float], name: str) -> dict[str, float]:
    """wrk has no fixed rate: space each connection's requests, correcting once."""
    target = full["rps"] / 2
    delay = max(0.0, CONNECTIONS / target * 1000 - full["mean_ms"])
    probe = wrk(url, seconds=3, connections=CONNECTIONS, run=f"{name}-probe", delay_ms=delay)
    delay = max(0.0, CONNECTIONS / target * 1000 - probe["mean_ms"])
    return wrk(url, seconds=SECONDS, connections=CONNECTIONS, run=f"{name}-half", delay_ms=delay)
