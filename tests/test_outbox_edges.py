"""The outbox at its edges: a trickling application, leases, what counts as delivered,
the application's Retry-After, and the order of one instance's messages."""

from __future__ import annotations

import time

from receiver.downstream import Downstream
from receiver.services import Services
from receiver.testing.simulator import Simulator
from receiver.workers.forwarder import Forwarder
from tests.appserver import SECRET, App, running
from tests.conftest import FakeClock, with_settings
from tests.test_forwarding import complete, forwarding, send

DEADLINE = (0.5, 1.0)  # connect, read: every attempt ends within 1.5 s


def test_a_trickling_answer_is_cut_at_its_deadline_and_others_keep_flowing(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    with running(App(trickle={"slow-1"})) as app:
        with_settings(services, forward_url=app.url, forward_secret=SECRET)
        first, second = (
            Forwarder(services, downstream=Downstream(app.url, SECRET, timeout=DEADLINE))
            for _ in range(2)
        )
        for instance_id in ("slow-1", "fast-1", "fast-2", "fast-3"):
            complete(services, sim, clock, instance_id)
        started = time.monotonic()
        assert first.drain() == 4
        while second.drain():  # a second worker at the same time: nothing to take
            raise AssertionError("a message on its way was claimed again")
        outcomes = first.wait()
        assert time.monotonic() - started < sum(DEADLINE) + 1
        assert sorted(map(str, outcomes)) == ["delivered"] * 3 + ["timeout"]
        delivered = {r.body["data"]["instance"]["instanceId"] for r in app.delivered()}
        assert delivered == {"fast-1", "fast-2", "fast-3"}
        assert app.overlaps == 0
        [slow] = services.store.messages(status="pending", limit=9)
        assert (slow.instance_id, slow.last_error, slow.attempts) == ("slow-1", "timeout", 1)
        for forwarder in (first, second):
            forwarder.close()


def test_a_lease_outlives_any_attempt(services: Services) -> None:
    with_settings(services, forward_url="https://app.example/hooks", forward_secret=SECRET)
    with_settings(services, poll_lease=5.0)
    slow = Downstream("https://app.example/hooks", SECRET, timeout=(3.05, 10.0))
    forwarder = Forwarder(services, downstream=slow)
    assert forwarder.lease > sum(slow.timeout)
    forwarder.close()


def test_a_worker_that_lost_its_lease_cannot_record_over_the_new_owner(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    with_settings(services, forward_url="https://app.example/hooks", forward_secret=SECRET)
    complete(services, sim, clock, "l-1")
    store = services.store
    [mine] = store.claim_messages("old", clock(), 10, 30)
    clock.advance(31)
    [theirs] = store.claim_messages("new", clock(), 10, 30)
    assert theirs.seq == mine.seq
    assert not store.record_attempt(mine.seq, "old", now=clock(), error=None, next_attempt_at=None)
    assert store.messages(status="pending", limit=9)[0].seq == mine.seq  # not delivered
    assert store.record_attempt(mine.seq, "new", now=clock(), error=None, next_attempt_at=None)
    assert store.messages(status="delivered", limit=9)[0].seq == mine.seq


def test_only_a_2xx_is_delivered_a_redirect_is_not(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    with running(App(script={"r-1": [301, 307, 304, 200]})) as app:
        forwarder = forwarding(services, app)
        complete(services, sim, clock, "r-1")
        outcomes = []
        for _ in range(4):
            outcomes += send(forwarder)
            clock.advance(86400)
        assert outcomes == ["http_301", "http_307", "http_304", "delivered"]
        forwarder.close()


def test_the_applications_retry_after_may_lengthen_a_delay_never_shorten_it(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    with running(App(script={"ra-1": [503, 503, 503]}, retry_after="0")) as app:
        forwarder = forwarding(services, app)
        complete(services, sim, clock, "ra-1")
        assert send(forwarder) == ["http_503"]
        [message] = services.store.messages(status="pending", limit=9)
        assert message.next_attempt_at == clock() + 5  # the schedule's, not Retry-After's 0
        clock.advance(4.9)
        assert send(forwarder) == []
        clock.advance(0.1)
        assert send(forwarder) == ["http_503"]
        [message] = services.store.messages(status="pending", limit=9)
        assert message.next_attempt_at == clock() + 300
        forwarder.close()
