"""Ingest: POST /webhooks/gbg against a bare Flask endpoint on the same gunicorn config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.harness import environment, free_port, gunicorn, rss_kib, children, wait_http, wrk

SECONDS = 10
CONNECTIONS = 16


def measure(name: str, app: str, database_url: str, out: Path, *, memory: int = 0) -> dict[str, Any]:
    """Full load, then half of that rate; with ``memory``, worker RSS before/after that many more."""
    port = free_port()
    env = environment(database_url, RECEIVER_BIND=f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}/webhooks/gbg"
    with gunicorn(app, env, out / f"ingest-{name}.log") as master:
        wait_http(f"http://127.0.0.1:{port}/healthz" if "wsgi" in app else url)
        wrk(url, seconds=2, connections=CONNECTIONS, run=f"{name}-warm")
        full = wrk(url, seconds=SECONDS, connections=CONNECTIONS, run=f"{name}-full")
        # Half load: each connection waits so that all together send half the full rate.
        delay_ms = max(0.0, CONNECTIONS / (full["rps"] / 2) * 1000 - full["mean_ms"])
        half = wrk(url, seconds=SECONDS, connections=CONNECTIONS, run=f"{name}-half",
                   delay_ms=delay_ms)
        result: dict[str, Any] = {"name": name, "full": full, "half": half}
        if memory:
            workers = children(master.pid)
            before = sum(rss_kib(p) for p in workers)
            sent = 0
            while sent < memory:
                sent += int(wrk(url, seconds=10, connections=CONNECTIONS, run=f"{name}-mem{sent}")["requests"])
            result["memory"] = {"webhooks": sent, "workers": len(workers),
                                "rss_before_kib": before,
                                "rss_after_kib": sum(rss_kib(p) for p in workers)}
    return result
