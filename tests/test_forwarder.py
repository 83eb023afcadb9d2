"""The forwarder's room: never more messages on their way than its concurrency, and a
sender thread for each one it claims (a claimed message never waits for a thread while
its lease runs)."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from receiver import notify
from receiver.downstream import Attempt, Downstream
from receiver.services import Services
from receiver.store import Store
from receiver.workers.forwarder import Forwarder
from tests.appserver import SECRET, App, running
from tests.conftest import FakeClock
from tests.test_forwarding import forwarding_on
from tests.test_outbox_edges import MESSAGE
from tests.test_store_queries import messages

WAIT = 10.0  # seconds a test waits for sends that should all be running at once


class Held(Downstream):
    """An application that answers each message only once ``together`` of them are in
    flight at once; it notes the thread each one was sent on."""

    def __init__(self, together: int) -> None:
        super().__init__("https://app.example/hooks", SECRET)
        self.barrier = threading.Barrier(together, timeout=WAIT)
        self.threads: list[str] = []

    def send(self, seq: int, body: str) -> Attempt:
        self.threads.append(threading.current_thread().name)
        self.barrier.wait()
        return Attempt(None)


def due(store: Store, clock: FakeClock, count: int) -> None:
    messages(store, *((seq, f"f-{seq}", clock(), "pending") for seq in range(1, count + 1)))


def test_a_forwarder_claims_only_what_it_has_room_for(services: Services, clock: FakeClock) -> None:
    forwarding_on(services)
    due(services.store, clock, 5)
    held = Held(2)
    forwarder = Forwarder(services, concurrency=2, downstream=held)
    assert forwarder.drain() == 2
    assert forwarder.drain() == 0  # no room while both are on their way
    assert forwarder.wait() == ["delivered", "delivered"]
    assert forwarder.drain() == 2  # room again
    assert forwarder.wait() == ["delivered", "delivered"]
    forwarder.close()


def test_every_claimed_message_has_its_own_sender_thread(
    services: Services, clock: FakeClock
) -> None:
    forwarding_on(services)
    many = 40  # more than a thread pool's default size on any machine under 36 cores
    due(services.store, clock, many)
    held = Held(many)
    forwarder = Forwarder(services, concurrency=many, downstream=held)
    assert forwarder.drain() == many
    assert forwarder.wait() == ["delivered"] * many  # all in flight at once
    assert all(name.startswith("forward_") for name in held.threads)
    forwarder.close()


def test_a_forwarders_connections_match_its_concurrency(services: Services) -> None:
    forwarding_on(services)
    forwarder = Forwarder(services, concurrency=12)
    adapter = forwarder.downstream.session.get_adapter("https://app.example/hooks")
    assert adapter.poolmanager.connection_pool_kw["maxsize"] == 12  # type: ignore[attr-defined]
    forwarder.close()


def test_closing_waits_for_the_sends_in_flight_then_gives_back_what_is_left(
    services: Services, clock: FakeClock
) -> None:
    forwarding_on(services)
    due(services.store, clock, 1)
    held = Held(2)  # the send waits for this test to join it
    forwarder = Forwarder(services, downstream=held)
    assert forwarder.drain() == 1
    closed: list[int] = []
    closing = threading.Thread(target=lambda: closed.append(forwarder.close()))
    closing.start()
    held.barrier.wait()
    closing.join(WAIT)
    assert closed == [0]  # the send was recorded before close gave back leases: none left
    assert [m.status for m in services.store.messages(status=None, limit=9)] == ["delivered"]


class Broken(Downstream):
    def __init__(self) -> None:
        super().__init__("https://app.example/hooks", SECRET)

    def send(self, seq: int, body: str) -> Attempt:
        raise RuntimeError("a bug in sending")


def test_closing_gives_back_the_lease_of_a_send_that_crashed(
    services: Services, clock: FakeClock
) -> None:
    forwarding_on(services)
    due(services.store, clock, 1)
    forwarder = Forwarder(services, downstream=Broken())
    assert forwarder.drain() == 1
    assert forwarder.wait() == [None]  # logged as forward.failed; its lease still held
    assert forwarder.close() == 1
    assert forwarder.services.store.claim_messages("other", clock(), 9, 30) != []


def test_an_attempts_line_says_in_how_long_the_next_one_goes_to_the_ms(
    services: Services, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    due(services.store, clock, 1)
    [message] = services.store.claim_messages("w", clock(), 1, 30)

    class Slow(Downstream):
        def send(self, seq: int, body: str) -> Attempt:
            return Attempt("http_503", retry_after=12.34567)  # longer than the schedule's 5 s

    slow = Slow("https://app.example/hooks", SECRET)
    assert notify.attempt(services, slow, message, "w") == "http_503"
    [line] = [r for r in caplog.records if r.getMessage() == "forward.attempted"]
    assert line.next_attempt_in_s == 12.346  # type: ignore[attr-defined]


def test_a_forward_verifies_on_a_host_whose_clock_is_not_utc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")  # the timestamp is UTC whatever the zone
    time.tzset()
    try:
        with running(App()) as app:
            assert Downstream(app.url, SECRET).send(7, MESSAGE).error is None
            assert (len(app.delivered()), app.unverified) == (1, 0)
    finally:
        monkeypatch.undo()
        time.tzset()
