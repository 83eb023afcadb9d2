"""The forwarder's room: never more messages on their way than its concurrency, and a
sender thread for each one it claims (a claimed message never waits for a thread while
its lease runs)."""

from __future__ import annotations

import threading

from receiver.downstream import Attempt, Downstream
from receiver.services import Services
from receiver.store import Store
from receiver.workers.forwarder import Forwarder
from tests.appserver import SECRET
from tests.conftest import FakeClock, with_settings
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
    with_settings(services, forward_url="https://app.example/hooks", forward_secret=SECRET)
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
    with_settings(services, forward_url="https://app.example/hooks", forward_secret=SECRET)
    many = 40  # more than a thread pool's default size on any machine under 36 cores
    due(services.store, clock, many)
    held = Held(many)
    forwarder = Forwarder(services, concurrency=many, downstream=held)
    assert forwarder.drain() == many
    assert forwarder.wait() == ["delivered"] * many  # all in flight at once
    assert all(name.startswith("forward_") for name in held.threads)
    forwarder.close()
