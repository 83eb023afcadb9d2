"""Starting and measuring real processes for the benchmarks (127.0.0.1 only)."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from receiver.testing.simulator import Simulator

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
USER, PASSWORD, TOKEN = "bench", "bench-password-3f9a-71c2-d04e", "bench-token-8b1d-25e7-c6a0-94f3"
AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    env.update(
        RECEIVER_DATABASE_URL=database_url,
        RECEIVER_WEBHOOK_USERNAME=USER,
        RECEIVER_WEBHOOK_PASSWORD=PASSWORD,
        RECEIVER_API_TOKENS=TOKEN,
    )
    env.update(extra)
    return env


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def gunicorn(app: str, env: dict[str, str], log: Path) -> Any:
    """gunicorn with receiver.web.gunicorn_conf, exactly as `gbg-receiver web` runs it."""
    conf = "python:receiver.web.gunicorn_conf"
    return process([PYTHON, "-m", "gunicorn", "-c", conf, "--chdir", str(ROOT), app], env, log)


@contextmanager
def simulator() -> Iterator[tuple[Simulator, dict[str, str]]]:
    """The GBG simulator on an ephemeral loopback port, in this process, and the
    RECEIVER_GBG_* settings that point a receiver at it."""
    sim = Simulator()
    server = sim.server()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        yield sim, gbg_settings(base, sim.client_id, sim.client_secret)
    finally:
        server.shutdown()
        server.server_close()


def gbg_settings(
    base: str,
    client_id: str = "sim-client",
    client_secret: str = "sim-secret",  # noqa: S107 - the simulator's own demo secret
) -> dict[str, str]:
    """The RECEIVER_GBG_* settings for a simulator at ``base`` (by default with the
    credentials `serve --simulator` starts it with)."""
    return {
        "RECEIVER_GBG_BASE_URL": base,
        "RECEIVER_GBG_TOKEN_URL": f"{base}/as/token.oauth2",
        "RECEIVER_GBG_CLIENT_ID": client_id,
        "RECEIVER_GBG_CLIENT_SECRET": client_secret,
    }


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read() or b"null")


def wrk(
    url: str, *, seconds: float, connections: int, run: str, delay_ms: float = 0
) -> dict[str, float]:
    """A closed-loop wrk run of webhook.lua; answers req/s, p50 and p99 in ms."""
    env = dict(os.environ, BENCH_AUTH=AUTH, BENCH_RUN=run, BENCH_DELAY_MS=str(int(delay_ms)))
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(ROOT / "bench" / "webhook.lua"),
            url,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    fields = dict(re.findall(r"(\w+)=([\d.]+)", out.split("BENCH", 1)[1]))
    requests, seconds_run = float(fields["requests"]), float(fields["duration_us"]) / 1e6
    return {
        "rps": requests / seconds_run,
        "p50_ms": float(fields["p50_us"]) / 1000,
        "p99_ms": float(fields["p99_us"]) / 1000,
        "mean_ms": float(fields["mean_us"]) / 1000,
        "requests": requests,
        "errors": float(fields["errors"]) + float(fields["non2xx"]),
    }


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User and system CPU of ``pid`` and its children (gunicorn's master and workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in [pid, *children(pid)]:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


def cpu_stolen() -> tuple[int, int]:
    """This machine's CPU ticks so far: those the host took for others (steal), and all."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return ticks[7], sum(ticks)


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float], expected: int) -> dict[str, float]:
    """Percentiles of ``values``, and how many of ``expected`` were measured."""
    return {
        "n": len(values),
        "expected": expected,
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
    }
