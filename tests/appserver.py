"""The business's application as a forwarding target: a real HTTP endpoint that checks
every message with the standardwebhooks library, as the docs tell applications to."""

from __future__ import annotations

import http.server
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from standardwebhooks.webhooks import Webhook

from receiver import usecases
from receiver.domain.model import COMPLETED, Fetched, GbgState, Registered, TtlPassed
from receiver.domain.schedule import Policy
from receiver.store import Store

DONE = GbgState(COMPLETED, "Completed", outcome="Of Age")
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes once decoded


@dataclass
class Received:
    webhook_id: str
    body: dict[str, Any]
    started: float
    ended: float = 0.0
    answered: int = 0
    at: float = field(default_factory=time.time)  # wall clock, to compare with other logs
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class App:
    """Answers each instance's ``script`` statuses in turn (then 204); records every
    verified message."""

    port: int = 0
    script: dict[str, list[int]] = field(default_factory=dict)
    retry_after: str | None = None
    hang: threading.Event | None = None  # while set and unanswered, requests wait
    delay: float = 0.0  # seconds each answer takes
    trickle: set[str] = field(default_factory=set)  # their answers' headers never end
    answer: bytes = b""  # the body of every answer
    in_flight: dict[str, int] = field(default_factory=dict)  # webhook-id: requests now
    overlaps: int = 0  # requests for a message that was already on its way
    received: list[Received] = field(default_factory=list)
    unverified: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def delivered(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if 200 <= r.answered < 300]


def trickle_headers(answering: http.server.BaseHTTPRequestHandler, every: float = 0.2) -> None:
    """Answer a 200 whose headers come one byte every ``every`` seconds and never end,
    until the other side hangs up (each byte in time; the whole answer never)."""
    try:
        answering.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        for _ in range(300):
            answering.wfile.write(b"z")
            answering.wfile.flush()
            time.sleep(every)
    except OSError:
        pass  # the other side gave up: as it should
    answering.close_connection = True


def handler(app: App) -> type[http.server.BaseHTTPRequestHandler]:
    verifier = Webhook(SECRET)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"] or 0))
            try:
                body = verifier.verify(raw, dict(self.headers.items()))
            except Exception:
                with app.lock:
                    app.unverified += 1
                self._answer(400)
                return
            entry = Received(self.headers["webhook-id"], body, time.monotonic())
            entry.headers = dict(self.headers.items())
            instance_id = body["data"]["instance"]["instanceId"]
            with app.lock:
                app.received.append(entry)
                planned = app.script.get(instance_id, [])
                status = planned.pop(0) if planned else 204
                app.overlaps += bool(app.in_flight.get(entry.webhook_id))
                app.in_flight[entry.webhook_id] = app.in_flight.get(entry.webhook_id, 0) + 1
            try:
                if instance_id in app.trickle:
                    self._trickle()
                    return
                if app.hang is not None:
                    app.hang.wait(30)
                time.sleep(app.delay)
                entry.ended, entry.answered = time.monotonic(), status
                self._answer(status)
            finally:
                with app.lock:
                    app.in_flight[entry.webhook_id] -= 1

        def _trickle(self) -> None:
            trickle_headers(self)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            if app.retry_after and status in (429, 503):
                self.send_header("Retry-After", app.retry_after)
            self.send_header("Content-Length", str(len(app.answer)))
            self.end_headers()
            self.wfile.write(app.answer)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def seed_messages(store: Store, ids: list[str], now: float) -> None:
    """Two messages for each of ``ids`` in the outbox, in order: the instance expired, then
    (a later fetch) completed."""
    policy = Policy()
    for start in range(0, len(ids), 250):
        batch = ids[start : start + 250]
        changes: list[tuple[Any, float]] = [(Registered(i), now - policy.ttl - 10) for i in batch]
        changes += [(TtlPassed(i), now) for i in batch]  # each instance's first change
        changes += [(Fetched(i, DONE), now) for i in batch]  # ... and its second
        usecases.fold(store, policy, changes, forward=True)


def sent_once_at_a_time_in_order(app: App, messages: int) -> None:
    """Every one of ``messages`` arrived and verified, none was on its way twice at once,
    and each instance's came in order (as ``seed_messages`` wrote them)."""
    assert app.unverified == 0
    by_id: dict[str, list[Received]] = defaultdict(list)
    for r in app.received:
        by_id[r.webhook_id].append(r)
    assert len(by_id) == messages  # every message arrived
    for tries in by_id.values():  # never sent twice at the same time
        spans = sorted((r.started, r.ended) for r in tries)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in pairwise(spans))
    by_instance: dict[str, list[Received]] = defaultdict(list)
    for r in sorted(app.received, key=lambda r: r.started):
        by_instance[r.body["data"]["instance"]["instanceId"]].append(r)
    for tries in by_instance.values():  # in order: the completion after the expiry
        assert [r.body["type"] for r in tries][:2] == ["journey.expired", "journey.completed"]
        assert tries[0].ended <= tries[1].started


@contextmanager
def running(app: App) -> Iterator[App]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", app.port), handler(app))
    server.daemon_threads = True
    app.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield app
    finally:
        if app.hang is not None:
            app.hang.set()
        server.shutdown()
        server.server_close()
