"""Ingest: POST /webhooks/gbg against a bare Flask endpoint on the same gunicorn config.

This machine's speed drifts by a factor of two within minutes (other tenants), so the
servers run side by side and take turns in short rounds: bare, the ceiling (bare after
a 1 ms wait that costs no CPU), SQLite, PostgreSQL, and so on, with one more bare run at
the end. Each target's ratio in a round is its rate over the mean of the bare runs just
before and just after it; the figure reported is the median of the rounds. Each run
also counts its server's CPU (every gunicorn process's user and system time, from
/proc) over the requests it served, and the share of the machine's CPU the host gave
to others meanwhile (steal, from /proc/stat): a round with much of it is the host's.
"""

from __future__ import annotations

import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from statistics import median
from typing import Any

from bench.harness import (
    children,
    cpu_seconds,
    cpu_stolen,
    environment,
    free_port,
    gunicorn,
    rss_kib,
    wait_http,
    wrk,
)

SECONDS = 5
ROUNDS = 5
CONNECTIONS = 16
TARGETS = ("ceiling", "sqlite", "postgres")
APPS = {"bare": "bench.bare:app", "ceiling": "bench.bare:ceiling"}  # the rest: wsgi:app


def measure(databases: dict[str, str], out: Path, *, memory: int = 0) -> dict[str, Any]:
    """``databases``: a URL for "bare" and "ceiling" (unused by them), "sqlite" and
    "postgres"."""
    with ExitStack() as stack:
        urls, masters = {}, {}
        for name, database_url in databases.items():
            app = APPS.get(name, "wsgi:app")
            urls[name], masters[name] = start(stack, name, app, database_url, out)

        def run(name: str, label: str) -> dict[str, float]:
            before, (stolen, ticks) = cpu_seconds(masters[name].pid), cpu_stolen()
            result = wrk(urls[name], seconds=SECONDS, connections=CONNECTIONS, run=label)
            spent = cpu_seconds(masters[name].pid) - before
            stolen_after, ticks_after = cpu_stolen()
            return result | {
                "cpu_ms": spent * 1000 / max(result["requests"], 1),
                "steal_pct": 100 * (stolen_after - stolen) / max(ticks_after - ticks, 1),
            }

        for name, url in urls.items():
            wrk(url, seconds=2, connections=CONNECTIONS, run=f"{name}-warm")
        rounds: list[dict[str, dict[str, float]]] = []
        for n in range(ROUNDS):
            rounds.append({name: run(name, f"{name}-r{n}") for name in urls})
        last_bare = run("bare", "bare-last")
        bares = [r["bare"] for r in rounds] + [last_bare]
        result: dict[str, Any] = {"rounds": rounds, "bare": bares}
        for name in TARGETS:
            ratios = [
                r[name]["rps"] / ((bares[n]["rps"] + bares[n + 1]["rps"]) / 2)
                for n, r in enumerate(rounds)
            ]
            result[name] = {
                "ratio": median(ratios),
                "ratios": ratios,
                "rps": median(r[name]["rps"] for r in rounds),
                "p50_ms": median(r[name]["p50_ms"] for r in rounds),
                "p99_ms": median(r[name]["p99_ms"] for r in rounds),
                "cpu_ms": median(r[name]["cpu_ms"] for r in rounds),
            }
        result["bare_rps"] = median(b["rps"] for b in bares)
        result["bare_cpu_ms"] = median(b["cpu_ms"] for b in bares)
        full = {name: [r[name] for r in rounds] for name in TARGETS}
        full["bare"] = bares
        # Half load: each at half its own full rate; bare before and after the others.
        result["half"] = {
            run: half_load(urls[name], full[name], run)
            for run, name in (
                ("bare", "bare"),
                ("sqlite", "sqlite"),
                ("postgres", "postgres"),
                ("bare-after", "bare"),
            )
        }
        if memory:
            result["memory"] = memory_growth(urls["postgres"], masters["postgres"], memory)
    return result


def start(stack: ExitStack, name: str, app: str, database_url: str, out: Path) -> tuple[str, Any]:
    port = free_port()
    env = environment(database_url, RECEIVER_BIND=f"127.0.0.1:{port}")
    if app == "wsgi:app":
        subprocess.run(
            [sys.executable, "-m", "receiver", "migrate"], env=env, check=True, capture_output=True
        )
    url = f"http://127.0.0.1:{port}/webhooks/gbg"
    master = stack.enter_context(gunicorn(app, env, out / f"ingest-{name}.log"))
    wait_http(url)
    return url, master


def half_load(url: str, full: list[dict[str, float]], name: str) -> dict[str, float]:
    """wrk has no fixed rate: space each connection's requests, correcting once."""
    target = median(f["rps"] for f in full) / 2
    delay = max(0.0, CONNECTIONS / target * 1000 - median(f["mean_ms"] for f in full))
    probe = wrk(url, seconds=3, connections=CONNECTIONS, run=f"{name}-probe", delay_ms=delay)
    delay = max(0.0, CONNECTIONS / target * 1000 - probe["mean_ms"])
    return wrk(url, seconds=SECONDS, connections=CONNECTIONS, run=f"{name}-half", delay_ms=delay)


def memory_growth(url: str, master: Any, webhooks: int) -> dict[str, int]:
    """Largest worker RSS before and after ``webhooks`` more webhooks."""
    workers = children(master.pid)
    before = {p: rss_kib(p) for p in workers}
    sent = 0
    while sent < webhooks:
        sent += int(wrk(url, seconds=10, connections=CONNECTIONS, run=f"m{sent}")["requests"])
    after = {p: rss_kib(p) for p in workers}
    return {
        "webhooks": sent,
        "workers": len(workers),
        "rss_before_kib": max(before.values()),
        "rss_after_kib": max(after.values()),
    }
