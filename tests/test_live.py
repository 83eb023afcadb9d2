"""Real processes: gunicorn through `gbg-receiver web`, `serve` with the simulator,
pollers on PostgreSQL; ephemeral ports, logs under tmp_path."""

from __future__ import annotations

import base64
import contextlib
import http.client
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
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from receiver.domain.model import WebhookReceived
from receiver.store import Store
from receiver.store.engine import Database
from receiver.testing.simulator import Simulator
from tests.conftest import API_TOKEN, INSTANCE_FIELDS, PG_URL, WEBHOOK_PASS, apply, empty_tables
from tests.processes import (
    API,
    HOOK,
    Proc,
    base_env,
    call,
    gbg_env,
    run,
    start_serve,
    start_web,
    wait_for,
)

pytestmark = pytest.mark.live


def test_gunicorn_web_keeps_the_contracts_outside_shape(tmp_path: Path, procs: list[Proc]) -> None:
    base, _, serve = start_serve(tmp_path, procs)
    port = int(base.rsplit(":", 1)[1])
    hook = f"{base}/webhooks/gbg"
    assert exchange("GET", f"{base}/healthz")[0] == 200

    wrong = {"Authorization": "Basic " + base64.b64encode(b"gbg-hook:wrong").decode()}
    status, kind, _ = exchange("POST", hook, b'{"instanceId": "shape-1"}', wrong)
    assert (status, kind) == (401, "application/problem+json")
    assert call("GET", f"{base}/api/v1/instances/shape-1", headers=API)[0] == 404
    for body, expected in [
        (b"{oops", 400),
        (b'{"status": "Completed"}', 422),
        (b'{"instanceId": "a/b"}', 422),
        (json.dumps({"instanceId": "shape-1", "pad": "x" * (2 << 20)}).encode(), 413),
    ]:
        status, kind, problem = exchange("POST", hook, body, HOOK)
        assert (status, kind, problem["status"]) == (expected, "application/problem+json", expected)

    status, _, answer = exchange("POST", hook, b'{"instanceId": "shape-1"}', HOOK)
    assert (status, answer) == (202, {"instanceId": "shape-1"})
    deadline = time.monotonic() + 1  # the worker folds the inbox within a fraction of a second
    while (found := call("GET", f"{base}/api/v1/instances/shape-1", headers=API))[0] == 404:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    status, instance = found
    assert status == 200
    assert set(instance) == INSTANCE_FIELDS
    assert instance["webhookReceivedAt"] is not None

    assert exchange("GET", f"{base}/api/v1/instances/shape-1")[0] == 401
    registered = [call("POST", f"{base}/api/v1/instances", {"instanceId": "shape-2"}, API)[0]]
    registered.append(call("POST", f"{base}/api/v1/instances", {"instanceId": "shape-2"}, API)[0])
    assert registered == [201, 200]
    status, page = call("GET", f"{base}/api/v1/instances?status=in_progress&limit=1", headers=API)
    assert status == 200
    assert [i["instanceId"] for i in page["instances"]] == ["shape-2"]
    assert page["nextCursor"] is not None
    status, feed = call("GET", f"{base}/api/v1/events?after=0", headers=API)
    assert status == 200
    assert feed == {"events": [], "nextAfter": 0}  # registering is no status change

    # A chunked body past the limit is cut off while streaming: 413, nothing stored.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("POST", "/webhooks/gbg")
    conn.putheader("Authorization", HOOK["Authorization"])
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = b'{"instanceId": "chunky-1", "pad": "' + b"x" * 65536
    try:
        for _ in range(20):
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            chunk = b"x" * 65536
        conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may stop reading once it has answered
    answer = conn.getresponse()
    status = answer.status
    conn.close()
    assert status == 413
    assert call("GET", f"{base}/api/v1/instances/chunky-1", headers=API)[0] == 404

    # A sender still writing a too-large body reads the 413; it is not cut off mid-send.
    big = json.dumps({"instanceId": "big-1", "pad": "x" * (4 << 20)}).encode()
    for _ in range(10):
        assert call_raw(f"{base}/webhooks/gbg", big, HOOK) == 413
    assert serve.stop() == 0
    log = serve.log.read_text()
    assert WEBHOOK_PASS not in log
    assert API_TOKEN not in log


def exchange(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str, Any]:
    """One request; answers the status, the media type and the parsed JSON body."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            status, kind, raw = answer.status, answer.headers.get_content_type(), answer.read()
    except urllib.error.HTTPError as exc:
        status, kind, raw = exc.code, exc.headers.get_content_type(), exc.read()
        exc.close()
    return status, kind, json.loads(raw or b"null")


def call_raw(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        exc.read()
        exc.close()
        return exc.code


def test_web_refuses_to_start_with_bad_configuration(tmp_path: Path) -> None:
    env = base_env(tmp_path, RECEIVER_POLL_INTERVAL="often", RECEIVER_WEBHOOK_AUTH="maybe")
    result = run(["web"], env)
    assert result.returncode != 0
    assert "RECEIVER_POLL_INTERVAL" in result.stderr
    assert "RECEIVER_WEBHOOK_AUTH" in result.stderr


def test_serve_with_the_simulator_learns_every_ending(tmp_path: Path, procs: list[Proc]) -> None:
    base, sim, serve = start_serve(
        tmp_path, procs, RECEIVER_WEBHOOK_TIMEOUT="2", RECEIVER_CONFIRM_DELAY="0.2"
    )
    # The module posts 0.3 s after the end: confirmed by one fetch.
    _, hooked = call("POST", f"{sim}/_sim/journeys", {"endsIn": 0, "webhookIn": 0.3})
    # The webhook is lost: the application registered it, polling finds the end.
    _, lost = call(
        "POST", f"{sim}/_sim/journeys", {"endsIn": 0.5, "webhook": "drop", "status": "Failed"}
    )
    assert (
        call("POST", f"{base}/api/v1/instances", {"instanceId": lost["instanceId"]}, API)[0] == 201
    )
    deadline = time.monotonic() + 20
    states: dict[str, Any] = {}
    while time.monotonic() < deadline:
        states = {
            i: call("GET", f"{base}/api/v1/instances/{i}", headers=API)[1]
            for i in (hooked["instanceId"], lost["instanceId"])
        }
        if all(s and s["status"] != "in_progress" for s in states.values()):
            break
        time.sleep(0.2)
    assert states[hooked["instanceId"]]["status"] == "completed"
    assert states[hooked["instanceId"]]["source"] == "webhook"
    assert states[lost["instanceId"]]["status"] == "failed"
    assert states[lost["instanceId"]]["source"] == "poll"
    _, calls = call("GET", f"{sim}/_sim/calls")
    fetched = [c["instanceId"] for c in calls["calls"]]
    assert fetched.count(hooked["instanceId"]) == 1
    assert calls["tokenRequests"] == 1
    assert serve.stop() == 0
    said = serve.log.read_text()
    assert f"GBG is the bundled simulator at {sim}." in said
    # Once ready it says where to go next: the dashboard, how to sign in, what to try.
    assert f"gbg-receiver is ready on {base}" in said
    assert f"dashboard:  {base}/dashboard/  (sign in with an API token" in said
    assert "next:       the README's 'Try it'" in said  # the token is no demo's: not shown
    assert said.count("gbg-receiver is ready") == 1


def test_serve_exits_non_zero_when_a_child_dies(tmp_path: Path, procs: list[Proc]) -> None:
    _, _, serve = start_serve(tmp_path, procs)
    children = [
        int(p)
        for p in Path(f"/proc/{serve.popen.pid}/task/{serve.popen.pid}/children")
        .read_text()
        .split()
    ]
    poller = next(p for p in children if b"poller" in Path(f"/proc/{p}/cmdline").read_bytes())
    os.kill(poller, signal.SIGKILL)
    assert serve.popen.wait(30) == 1
    assert "poller exited with -9" in serve.log.read_text()


@pytest.mark.postgres
def test_two_pollers_on_postgres_never_fetch_one_instance_at_once(
    tmp_path: Path, procs: list[Proc], sim: Simulator, pg_engine: sa.Engine
) -> None:
    empty_tables(pg_engine)
    store = Store(Database(pg_engine))
    sim.latency = 0.02
    ids = [f"pp-{n}" for n in range(150)]
    now = time.time()
    for iid in ids:
        sim.set_status(iid, "Completed")
        apply(store, WebhookReceived(iid), now - 5)
    assert PG_URL
    env = gbg_env(
        tmp_path,
        sim.base_url,  # type: ignore[attr-defined]
        RECEIVER_DATABASE_URL=PG_URL,
        RECEIVER_GBG_RATE_LIMIT="200",
    )
    pollers = [Proc(["poller"], env, tmp_path / f"poller-{n}.log") for n in range(2)]
    procs.extend(pollers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        page = store.page(status="in_progress", limit=1, after=None)
        if not page:
            break
        time.sleep(0.2)
    assert [p.stop() for p in pollers] == [0, 0]
    fetches = sim.fetches()
    assert sorted(c["instanceId"] for c in fetches) == sorted(ids)  # each exactly once
    by_pid = [(p.log.read_text().count('"poll.fetched"')) for p in pollers]
    assert all(n > 0 for n in by_pid), by_pid  # both took part
    assert store.leases() == []  # SIGTERM gave every lease back


def healthcheck(env: dict[str, str], role: str) -> int:
    done = subprocess.run(
        [sys.executable, "-m", "receiver.healthcheck", role], env=env, timeout=30, check=False
    )
    return done.returncode


def test_the_images_health_check_watches_each_role(tmp_path: Path, procs: list[Proc]) -> None:
    env = gbg_env(tmp_path, "http://127.0.0.1:9", TMPDIR=str(tmp_path))
    assert run(["migrate"], env).returncode == 0
    assert healthcheck(env, "poller") == 1  # no worker has ever beaten
    assert healthcheck(env, "migrate") == 0  # runs once: nothing to watch
    worker = Proc(["poller"], env, tmp_path / "poller.log")
    procs.append(worker)
    heartbeat = tmp_path / "gbg-receiver-worker.heartbeat"
    deadline = time.monotonic() + 20
    while not heartbeat.exists():
        assert time.monotonic() < deadline, worker.log.read_text()
        time.sleep(0.1)
    assert healthcheck(env, "poller") == 0
    os.utime(heartbeat, (time.time() - 60, time.time() - 60))  # a scheduler stuck a minute
    assert healthcheck(env, "poller") == 1
    assert worker.stop() == 0

    base, _, _ = start_serve(tmp_path, procs)
    assert healthcheck(env | {"RECEIVER_BIND": base.removeprefix("http://")}, "web") == 0
    assert healthcheck(env | {"RECEIVER_BIND": "127.0.0.1:9"}, "web") == 1


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_an_application_starts_a_journey_and_reads_the_decision_with_our_api_alone(
    tmp_path: Path, procs: list[Proc], version: str
) -> None:
    base, sim, _ = start_serve(
        tmp_path, procs, RECEIVER_GBG_API_VERSION=version, RECEIVER_WEBHOOK_TIMEOUT="1"
    )
    body = {"resourceId": "age-check@latest", "reference": "order-1"}
    status, started = call("POST", f"{base}/api/v1/journeys", body, API)
    assert status == 201
    instance_id = started["instanceId"]
    if version == "v2":  # the hosted journey's URL, for the person
        assert started["instanceUrl"].endswith(f"/journey/{instance_id}")
    # The person finishes the journey at GBG (no webhook: polling finds it).
    call(
        "POST", f"{sim}/_sim/instances/{instance_id}", {"status": "Completed", "outcome": "Of Age"}
    )
    deadline = time.monotonic() + 20
    while (done := call("GET", f"{base}/api/v1/instances/{instance_id}", headers=API)[1])[
        "status"
    ] == "in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert (done["status"], done["reference"], done["source"]) == ("completed", "order-1", "poll")
    assert done["journey"]["endedAt"]  # never "" (v1 says "" while in progress)
    if version == "v2":
        [step] = done["steps"]
        assert step["result"]["outcome"] == "Of Age"
        assert step["result"]["advice"]["age_result_capabilities"] == ["resultcode.confirm.age"]


def test_ctrl_c_stops_serve_at_once_with_browser_connections_open(
    tmp_path: Path, procs: list[Proc]
) -> None:
    base, _, serve = start_serve(tmp_path, procs, RECEIVER_WEB_WORKERS="2")
    port = int(base.rsplit(":", 1)[1])
    held = []
    for n in range(6):  # a browser's spare connections, and two kept alive after a page
        sock = socket.create_connection(("127.0.0.1", port))
        if n < 2:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"200 OK" in sock.recv(4096)
        held.append(sock)
    started = time.monotonic()
    os.killpg(serve.popen.pid, signal.SIGINT)  # what Ctrl-C sends the terminal's group
    assert serve.popen.wait(30) == 0
    stopped_in = time.monotonic() - started
    for sock in held:
        sock.close()
    # Not gthread's wait for each open connection (5 s, then graceful_timeout and SIGKILL):
    # gunicorn gives kept-alive ones 2 s at most; the rest is each process's own stop.
    assert stopped_in < 10, f"serve took {stopped_in:.1f} s to stop"
    errors = [line for line in serve.log.read_text().splitlines() if '"level": "error"' in line]
    assert errors == []


def held(pid: int, port: int) -> int:
    """How many established TCP connections to ``port`` process ``pid`` holds (Linux)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            inodes.add(os.readlink(fd).removeprefix("socket:[").removesuffix("]"))
    rows = [row.split() for row in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return sum(
        int(r[1].split(":")[1], 16) == port and r[3] == "01" and r[9] in inodes for r in rows
    )


def test_connections_opened_together_are_spread_over_the_workers(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """A worker takes a connection only while it has a thread for it: four webhooks
    begun together are held by four workers (of four, one thread each), not queued
    behind one another in the worker that woke first. Kept-alive idle connections hold
    no thread: the fifth is taken once the others were answered."""
    env = base_env(tmp_path, RECEIVER_WEB_WORKERS="4", RECEIVER_WEB_THREADS="1")
    assert run(["migrate"], env).returncode == 0
    web, base = start_web(env, tmp_path / "web.log", procs)
    port = int(base.rsplit(":", 1)[1])
    workers: list[int] = []

    def booted() -> bool:
        workers[:] = map(int, re.findall(r"Booting worker with pid: (\d+)", web.log.read_text()))
        return len(workers) == 4

    wait_for(booted, timeout=30)
    bodies = [json.dumps({"instanceId": f"spread-{n}"}).encode() for n in range(5)]
    opened = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(5)]
    for sock, body in zip(opened, bodies, strict=True):  # each holds a thread until its body
        sock.sendall(
            f"POST /webhooks/gbg HTTP/1.1\r\nHost: x\r\nAuthorization: {HOOK['Authorization']}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
    wait_for(lambda: [held(pid, port) for pid in workers] == [1, 1, 1, 1], timeout=30)
    for sock, body in zip(opened, bodies, strict=True):
        sock.sendall(body)
    for sock in opened:
        assert b"202 Accepted" in sock.recv(4096)
        sock.close()


BOOTING_WORKER = """
import os, queue, signal, weakref
from gunicorn.config import Config
from receiver.web import gunicorn_conf

worker = gunicorn_conf.Worker(1, os.getppid(), [], None, 30, Config(), None)
worker.PIPE, worker._fresh = os.pipe(), weakref.WeakSet()
os.set_blocking(worker.PIPE[1], False)
worker.method_queue.init()
worker.master_signals = queue.SimpleQueue()
worker.master_signals.put_nowait(signal.SIGTERM)  # what the master's copied handler did
worker.init_signals()
print("stopping" if not worker.alive else "serving on")
"""


def test_a_stop_sent_while_a_worker_boots_is_heard(tmp_path: Path) -> None:
    """A worker that met the master's TERM before its own handlers were set (the master
    stops while it respawns one) stops, instead of keeping the master waiting out
    graceful_timeout and being killed."""
    done = subprocess.run(
        [sys.executable, "-c", BOOTING_WORKER],
        env=base_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "stopping"), done.stderr
