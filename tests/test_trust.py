"""Nothing GBG sends can stop polling for everyone; an outage charges no instance.

The worker's own engine against the simulator over HTTP, on a clock the test moves.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from receiver import fetching, usecases
from receiver.domain.model import FetchFailed
from receiver.domain.schedule import WIDE_AFTER
from receiver.errors import Throttled
from receiver.services import Services
from receiver.store.rate import FetchSlots
from receiver.testing.simulator import Fault, Simulator
from receiver.web import create_app
from tests.conftest import API_TOKEN, FakeClock, with_settings
from tests.test_poller import poll_once, webhook

BEARER = {"Authorization": f"Bearer {API_TOKEN}"}
NORMAL = [f"n-{n}" for n in range(6)]


def run_for(services: Services, clock: FakeClock, seconds: float, step: float = 1.0) -> None:
    end = clock() + seconds
    while clock() < end:
        poll_once(services)
        clock.advance(step)


def test_a_hostile_gbg_answer_stops_nobody_else(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    with_settings(services, poll_max_errors=3)
    client = create_app(services=services).test_client()
    hostile: dict[str, Any] = {
        "h-inf": "inf",
        "h-date": "Fri, 01 Jan 2100 00:00:00 GMT",
        "h-big": "1e12",
    }
    for instance_id, wait in hostile.items():
        sim.add_fault(Fault("429", count=10**6, retry_after=wait, instance_id=instance_id))
    sim.set_status("h-unknown", "Paused")  # no status GBG documents
    for instance_id in NORMAL:
        sim.set_status(instance_id, "Completed", "Of Age")
    start = clock()
    for instance_id in [*hostile, "h-unknown", *NORMAL]:
        webhook(services, instance_id)
    answers = set()
    while clock() < start + 1 + 60 + 10:  # the confirm delay, one bounded pause, a schedule
        poll_once(services)
        answers.add(client.get("/api/v1/instances", headers=BEARER).status_code)
        clock.advance(1)
    for instance_id in NORMAL:
        assert services.store.get(instance_id).status == "completed"  # type: ignore[union-attr]
    run_for(services, clock, 600, step=5)  # long enough for the odd ones to give up
    for instance_id in [*hostile, "h-unknown"]:
        odd = services.store.get(instance_id)
        assert odd is not None
        assert (odd.status, odd.polling_gave_up, odd.poll_errors) == ("in_progress", True, 3)
        answers.add(client.get(f"/api/v1/instances/{instance_id}", headers=BEARER).status_code)
    answers.add(client.get("/api/v1/instances", headers=BEARER).status_code)
    assert answers == {200}
    # Bounded: no 429 kept anyone waiting for longer than a minute.
    paused_until, _ = services.store.fetch_standing()
    assert paused_until <= clock() + 60
    text = client.get("/metrics").get_data(as_text=True)
    assert 'gbg_receiver_gbg_fetches_total{outcome="unknown_status"}' in text
    assert "gbg_receiver_given_up_instances 4.0" in text


def test_an_outage_longer_than_the_error_budget_gives_up_no_instance(
    services: Services, sim: Simulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for instance_id in NORMAL:
        sim.set_status(instance_id, "Completed", "Of Age")
        webhook(services, instance_id)
    # One instance had given up before the outage, on errors of its own.
    sim.set_status("before", "Completed")
    webhook(services, "before")
    for _ in range(services.settings.poll_max_errors):
        usecases.observe(services, FetchFailed("before", "garbage"), clock())
    assert services.store.get("before").polling_gave_up  # type: ignore[union-attr]
    sim.add_fault(Fault("503", count=10**6))  # GBG is down for everyone
    outage = 41 * 60.0  # longer than 30 errors at the interval plus backoff (~45 min)
    run_for(services, clock, outage, step=5)
    during = [services.store.get(i) for i in NORMAL]
    assert all(i is not None and not i.polling_gave_up for i in during)
    assert max(i.poll_errors for i in during if i) < 3  # only before the outage was known
    fetched_during = len(sim.fetches())
    assert fetched_during < 40  # probes, not 6 x 30 errors' worth
    facts = services.store.snapshot(clock())
    assert facts["gbg_failures"] >= 3
    assert facts["gbg_paused_for"] > 0
    paused = [r for r in caplog.records if r.getMessage() == "gbg.paused"]
    assert paused
    assert all(r.levelname == "WARNING" and r.failures >= WIDE_AFTER for r in paused)  # type: ignore[attr-defined]
    client = create_app(services=services).test_client()
    operator = client.post(f"/api/v1/instances/{NORMAL[0]}/poll", headers=BEARER)
    assert operator.status_code == 503  # GBG is down for everyone: not a rate limit (429)
    assert int(operator.headers["Retry-After"]) > 0
    with sim.lock:
        sim.faults.clear()  # GBG is back
    run_for(services, clock, 310, step=5)  # the longest pause, then the normal schedule
    [recovered] = [r for r in caplog.records if r.getMessage() == "gbg.recovered"]
    assert recovered.failures >= WIDE_AFTER  # type: ignore[attr-defined]
    assert recovered.resumed == 1  # type: ignore[attr-defined]  # "before", which gave up
    for instance_id in [*NORMAL, "before"]:
        back = services.store.get(instance_id)
        assert back is not None
        assert (back.status, back.polling_gave_up) == ("completed", False), instance_id
    assert services.store.snapshot(clock())["gbg_failures"] == 0


@pytest.mark.parametrize("retry_after", ["inf", "Fri, 01 Jan 2100 00:00:00 GMT"])
def test_an_operators_poll_waits_a_bounded_time_then_says_when_to_retry(
    services: Services, sim: Simulator, clock: FakeClock, retry_after: str
) -> None:
    client = create_app(services=services).test_client()
    sim.set_status("o-1", "Completed")
    sim.set_status("o-2", "Completed")
    webhook(services, "o-1")
    webhook(services, "o-2")
    sim.add_fault(Fault("429", retry_after=retry_after, instance_id="o-1"))
    clock.advance(1)
    first = client.post("/api/v1/instances/o-1/poll", headers=BEARER)
    assert first.status_code == 200  # GBG's 429 is this fetch's answer: counted, paused
    assert first.get_json()["pollErrors"] == 1
    waited = clock()
    second = client.post("/api/v1/instances/o-2/poll", headers=BEARER)
    assert second.status_code == 429
    assert second.headers["Content-Type"] == "application/problem+json"
    assert 55 <= int(second.headers["Retry-After"]) <= 60
    assert clock() - waited < 1  # answered at once, no thread held for a minute
    assert services.store.get("o-2").status == "in_progress"  # type: ignore[union-attr]


def test_a_surprise_in_a_fetch_counts_as_a_failed_fetch_not_a_loop(
    services: Services, sim: Simulator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.set_status("s-1", "Completed")
    webhook(services, "s-1")
    clock.advance(1)

    def broken(instance_id: str) -> None:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(services.gbg, "fetch_state", broken)
    report = poll_once(services)
    assert (report.claimed, report.errors) == (1, 1)
    after = services.store.get("s-1")
    assert after is not None
    assert after.poll_errors == 1
    assert after.next_poll_at is not None
    assert after.next_poll_at > clock() + 10
    assert services.store.leases() == []
    assert poll_once(services).claimed == 0  # not due again at once


@pytest.mark.parametrize("failures", [WIDE_AFTER - 1, WIDE_AFTER])
def test_after_an_outage_of_exactly_the_threshold_given_up_instances_poll_again(
    services: Services, sim: Simulator, clock: FakeClock, failures: int
) -> None:
    sim.set_status("before", "Completed")
    webhook(services, "before")
    for _ in range(services.settings.poll_max_errors):
        usecases.observe(services, FetchFailed("before", "garbage"), clock())
    assert services.store.get("before").polling_gave_up  # type: ignore[union-attr]
    sim.set_status("probe", "Completed")
    sim.add_fault(Fault("503", count=failures))  # GBG fails for everyone, that many times
    for _ in range(failures):
        assert fetching.fetch(services, "probe", by="poll").outcome == "http_503"
    assert services.store.snapshot(clock())["gbg_failures"] == failures
    assert fetching.fetch(services, "probe", by="poll").outcome == "ok"  # GBG is back
    again = services.store.get("before")
    assert again is not None
    # An outage (the threshold reached) wakes what gave up meanwhile; fewer failures are
    # no outage, and what gave up on its own errors stays given up.
    assert again.polling_gave_up is (failures < WIDE_AFTER)
    assert services.store.snapshot(clock())["gbg_failures"] == 0


def test_a_success_on_a_slot_reserved_ahead_still_ends_the_failure_streak(
    services: Services, sim: Simulator
) -> None:
    # At 100 fetches a second slots are reserved a few at a time: the second fetch takes
    # one this process already holds, so only the process's own record of the streak
    # tells it that GBG had been failing.
    services.slots = FetchSlots(services.store.db, 100)
    sim.set_status("s-1", "InProgress")
    sim.add_fault(Fault("503"))
    assert fetching.fetch(services, "s-1").outcome == "http_503"
    assert fetching.fetch(services, "s-1").outcome == "ok"
    assert services.store.gbg_recovered() == 0  # the success already ended the streak
    with pytest.raises(Throttled) as held:  # the next slot is 10 ms off: the rate, not GBG
        fetching.fetch(services, "s-1", max_wait=0.001)
    assert not held.value.gbg_down
