"""Helpers for tests that start real processes: ports, environments, logs, readiness."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import API_TOKEN, WEBHOOK_PASS, WEBHOOK_USER

API = {"Authorization": f"Bearer {API_TOKEN}"}
HOOK = {
    "Authorization": "Basic " + base64.b64encode(f"{WEBHOOK_USER}:{WEBHOOK_PASS}".encode()).decode()
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    env.update(
        RECEIVER_DATABASE_URL=f"sqlite:///{tmp_path / 'receiver.db'}",
        RECEIVER_WEBHOOK_USERNAME=WEBHOOK_USER,
        RECEIVER_WEBHOOK_PASSWORD=WEBHOOK_PASS,
        RECEIVER_API_TOKENS=API_TOKEN,
        RECEIVER_WEB_WORKERS="2",
    )
    env.update(extra)
    return env


class Proc:
    """A child process whose output goes to a log file under tmp_path."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        log: Path,
        *,
        python: str = sys.executable,
        cwd: Path | None = None,
    ) -> None:
        self.log, self.env = log, env
        with log.open("wb") as out:  # the child keeps its own descriptor
            self.popen = subprocess.Popen(
                [python, "-m", "receiver", *args],
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            tail = self.log.read_text(errors="replace")[-4000:]
            command = self.popen.args[3:]
            raise AssertionError(f"{command} did not stop in {timeout} s:\n{tail}") from None


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


LISTENING = re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)")


def start_web(
    env: dict[str, str], log: Path, procs: list[Proc], *, timeout: float = 30, **proc: Any
) -> tuple[Proc, str]:
    """`gbg-receiver web` on a port the kernel picks when gunicorn binds (port 0), read
    back from gunicorn's own log line: no port is chosen, freed and raced for."""
    web = Proc(["web"], {**env, "RECEIVER_BIND": "127.0.0.1:0"}, log, **proc)
    procs.append(web)
    base = listening(web, timeout)
    wait_ready(base, web, timeout)
    return web, base


def listening(proc: Proc, timeout: float = 30) -> str:
    """Where the gunicorn that ``proc`` runs listens, as its log says."""
    deadline = time.monotonic() + timeout
    while not (found := LISTENING.search(proc.log.read_text(errors="replace"))):
        assert proc.popen.poll() is None, proc.log.read_text()
        assert time.monotonic() < deadline, "gunicorn never said where it listens"
        time.sleep(0.05)
    return found.group(1)


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, every: float = 0.05) -> None:
    """Ask ``condition`` every ``every`` seconds until it is true; fail the test after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(every)


def wait_ready(base: str, proc: Proc, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.popen.poll() is None, proc.log.read_text()
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    raise AssertionError("not ready: " + proc.log.read_text())


def call(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def gbg_env(tmp_path: Path, gbg_url: str, **extra: str) -> dict[str, str]:
    """base_env() with GBG at ``gbg_url`` (the simulator, or a port where nothing listens)."""
    return base_env(
        tmp_path,
        RECEIVER_GBG_BASE_URL=gbg_url,
        RECEIVER_GBG_TOKEN_URL=f"{gbg_url}/as/token.oauth2",
        RECEIVER_GBG_CLIENT_ID="sim-client",
        RECEIVER_GBG_CLIENT_SECRET="sim-secret",
        **extra,
    )


def post_webhook(base: str, instance_id: str) -> tuple[int, str | None]:
    """POST a webhook; answer the status (0: the connection broke) and any Retry-After."""
    request = urllib.request.Request(
        f"{base}/webhooks/gbg",
        data=json.dumps({"instanceId": instance_id}).encode(),
        method="POST",
        headers={**HOOK, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, None
    except urllib.error.HTTPError as exc:
        exc.read()
        exc.close()
        return exc.code, exc.headers.get("Retry-After")
    except OSError:
        return 0, None  # e.g. the worker was killed mid-request: not acknowledged


def start_serve(
    tmp_path: Path,
    procs: list[Proc],
    seed: Callable[[str], None] | None = None,
    cwd: Path | None = None,
    **env: str,
) -> tuple[str, str, Proc]:
    """`gbg-receiver serve --simulator` on fresh ports; answers its base, the simulator's, it.
    ``seed`` gets the database URL after the migration, before anything starts; ``cwd``,
    where another tree's ``receiver`` is the one that serves (this one migrates)."""
    # Both ports must be known before anything starts: the worker's GBG URL, and where
    # the simulator's Webhook module posts. Picked here, just before `serve` binds them.
    port, sim_port = free_port(), free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    environment = gbg_env(tmp_path, sim, RECEIVER_BIND=f"127.0.0.1:{port}", **env)
    assert run(["migrate"], environment).returncode == 0
    if seed is not None:
        seed(environment["RECEIVER_DATABASE_URL"])
    serve = Proc(["serve", "--simulator"], environment, tmp_path / "serve.log", cwd=cwd)
    procs.append(serve)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, serve)
    return base, sim, serve


def due_for_pollers(
    tmp_path: Path, sim: Any, pg_engine: Any, ids: list[str], rate: int
) -> dict[str, str]:
    """``ids`` as in-progress instances due for a fetch now, in an emptied PostgreSQL
    store (written in one statement), each Completed at the simulator, which answers in
    20 ms: the pollers' work. Answers the pollers' environment at a shared limit of
    ``rate`` fetches a second."""
    import sqlalchemy as sa

    from tests.conftest import PG_URL, empty_tables

    assert PG_URL
    empty_tables(pg_engine)
    now = time.time()
    for iid in ids:
        sim.set_status(iid, "Completed")
    with pg_engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO instances (instance_id, status, source, registered_at, updated_at, "
                "webhook_received_at, next_poll_at, poll_errors, polling_gave_up) "
                "VALUES (:i, 'in_progress', 'webhook', :t, :t, :t, :t, 0, false)"
            ),
            [{"i": i, "t": now} for i in ids],
        )
    sim.latency = 0.02
    return gbg_env(
        tmp_path, sim.base_url, RECEIVER_DATABASE_URL=PG_URL, RECEIVER_GBG_RATE_LIMIT=str(rate)
    )


def overlapping(calls: list[dict[str, Any]]) -> tuple[dict[str, list[tuple[float, float]]], int]:
    """The simulator's fetches by instance, and how many overlapped an earlier one of
    the same instance."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for c in calls:
        spans.setdefault(c["instanceId"], []).append((c["start"], c["end"]))
    overlaps = sum(
        1
        for s in spans.values()
        for a, b in zip(sorted(s), sorted(s)[1:], strict=False)
        if b[0] < a[1]
    )
    return spans, overlaps
