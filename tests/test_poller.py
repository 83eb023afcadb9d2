"""The polling fallback against the simulator over HTTP, on a clock the test moves."""

from __future__ import annotations

from dataclasses import replace

import pytest

from receiver import usecases
from receiver.domain.model import WebhookReceived
from receiver.services import Services
from receiver.store.rate import FetchSlots
from receiver.testing.simulator import Fault, Simulator
from receiver.web import create_app
from receiver.workers.poller import Poller, Report
from tests.conftest import FakeClock, gbg_client, with_settings


def poll_once(services: Services) -> Report:
    """One look for due work by the worker's own engine; answer what the fetches came to."""
    poller = Poller(services)
    try:
        poller.drain()
        return poller.wait()
    finally:
        poller.close()


@pytest.fixture
def exact(services: Services) -> Services:
    """Services whose schedule has no jitter, so intervals can be pinned exactly."""
    services.policy = replace(services.policy, jitter=0.0)
    return services


def register(services: Services, instance_id: str) -> None:
    usecases.register(services, instance_id, None)


def webhook(services: Services, instance_id: str) -> None:
    usecases.observe(services, WebhookReceived(instance_id, "Completed"), services.clock())


def poll_until_due(services: Services, clock: FakeClock, instance_id: str) -> float:
    """Move the clock to the instance's next poll, poll once, answer the interval waited."""
    before = clock()
    due = services.store.get(instance_id).next_poll_at  # type: ignore[union-attr]
    assert due is not None
    clock.now = due
    poll_once(services)
    return due - before


def test_instance_without_webhook_completes_by_polling_after_the_timeout(
    exact: Services, sim: Simulator, clock: FakeClock
) -> None:
    sim.set_status("t-1", "Completed", "Of Age")
    register(exact, "t-1")
    clock.advance(299)
    assert poll_once(exact).claimed == 0  # the webhook may still come
    clock.advance(1)
    report = poll_once(exact)
    assert (report.claimed, report.final) == (1, 1)
    done = exact.store.get("t-1")
    assert done is not None
    assert (done.status, done.source, done.outcome) == ("completed", "poll", "Of Age")
    assert len(sim.fetches("t-1")) == 1


def test_early_webhook_then_completion_three_seconds_later(
    exact: Services, sim: Simulator, clock: FakeClock
) -> None:
    sim.create("e-1")
    register(exact, "e-1")
    webhook(exact, "e-1")  # the module fires before the journey ends
    assert poll_until_due(exact, clock, "e-1") == 1.0  # RECEIVER_CONFIRM_DELAY
    assert exact.store.get("e-1").status == "in_progress"  # type: ignore[union-attr]
    # The follow-ups, 1, 2, 2 and 2 s apart, then GBG's interval again.
    gaps = [poll_until_due(exact, clock, "e-1") for _ in range(5)]
    assert gaps == [1.0, 2.0, 2.0, 2.0, 10.0]
    sim.set_status("e-1", "Completed", "Of Age")
    assert poll_until_due(exact, clock, "e-1") == 10.0
    done = exact.store.get("e-1")
    assert done is not None
    assert (done.status, done.source) == ("completed", "webhook")
    assert len(sim.fetches("e-1")) == 7  # the confirmation, 4 follow-ups, two at 10 s


def test_an_early_webhook_is_confirmed_by_a_follow_up_seconds_after_the_end(
    exact: Services, sim: Simulator, clock: FakeClock
) -> None:
    sim.create("e-2")
    register(exact, "e-2")
    webhook(exact, "e-2")  # 3 s before the end
    assert poll_until_due(exact, clock, "e-2") == 1.0  # in progress
    assert poll_until_due(exact, clock, "e-2") == 1.0  # in progress, 2 s after the webhook
    sim.set_status("e-2", "Completed", "Of Age")  # the end, 3 s after the webhook
    assert poll_until_due(exact, clock, "e-2") == 2.0  # found 1 s after the end
    assert exact.store.get("e-2").status == "completed"  # type: ignore[union-attr]


def test_webhook_at_the_end_costs_one_fetch(services: Services, sim: Simulator) -> None:
    sim.set_status("w-1", "Completed")
    webhook(services, "w-1")
    services.clock.advance(1)  # type: ignore[attr-defined]
    assert poll_once(services).final == 1
    assert len(sim.fetches("w-1")) == 1


def test_duplicate_and_late_webhooks_change_nothing_and_fetch_nothing(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    client = create_app(services=services).test_client()
    sim.set_status("d-1", "Completed")
    from tests.test_webhook import basic

    for _ in range(2):
        assert (
            client.post("/webhooks/gbg", json={"instanceId": "d-1"}, headers=basic()).status_code
            == 202
        )
    usecases.fold_inbox(services)
    clock.advance(1)
    poll_once(services)
    late = client.post("/webhooks/gbg", json={"instanceId": "d-1"}, headers=basic())
    assert late.get_json() == {"instanceId": "d-1"}
    usecases.fold_inbox(services)
    assert services.store.get("d-1").status == "completed"  # type: ignore[union-attr]
    clock.advance(3600)
    assert poll_once(services).claimed == 0
    assert len(sim.fetches("d-1")) == 1
    assert len(services.store.events_after(0, 10)) == 1


@pytest.mark.parametrize(
    "fault",
    [
        Fault("500"),
        Fault("502"),
        Fault("503"),
        Fault("429", retry_after=1),
        Fault("timeout", delay=2.5),
        Fault("garbage"),
        Fault("404"),
        Fault("401", count=2),
    ],
    ids=lambda f: f.kind,
)
def test_each_fault_counts_as_an_error_and_the_instance_still_reaches_truth(
    exact: Services, sim: Simulator, clock: FakeClock, fault: Fault
) -> None:
    sim.set_status("f-1", "Completed")
    webhook(exact, "f-1")
    sim.add_fault(fault)
    assert poll_until_due(exact, clock, "f-1") == 1.0
    failed = exact.store.get("f-1")
    assert failed is not None
    assert (failed.status, failed.poll_errors) == ("in_progress", 1)
    assert poll_until_due(exact, clock, "f-1") == 15.0
    assert exact.store.get("f-1").status == "completed"  # type: ignore[union-attr]
    assert sim.fetches("f-1")[-1]["status"] == 200


def test_interval_sequence_under_three_consecutive_errors(
    exact: Services, sim: Simulator, clock: FakeClock
) -> None:
    sim.create("s-1")
    register(exact, "s-1")
    sim.add_fault(Fault("garbage", count=3))  # this instance's errors, not GBG's outage
    intervals = [poll_until_due(exact, clock, "s-1") for _ in range(5)]
    assert intervals == [300.0, 15.0, 20.0, 25.0, 10.0]  # timeout, +5 s per error, reset
    assert exact.store.get("s-1").poll_errors == 0  # type: ignore[union-attr]


def test_retry_after_of_a_429_is_honoured_for_the_instance_and_all_fetches(
    exact: Services, sim: Simulator, clock: FakeClock
) -> None:
    sim.create("r-1")
    webhook(exact, "r-1")
    sim.add_fault(Fault("429", retry_after=40))
    poll_until_due(exact, clock, "r-1")
    after = exact.store.get("r-1")
    assert after is not None
    assert after.next_poll_at == pytest.approx(clock() + 40, abs=0.5)
    other_poller = FetchSlots(exact.store.db, 20.0)
    assert other_poller.take(clock) >= clock() + 39  # every poller waits


def test_gives_up_after_the_maximum_then_a_webhook_resumes(
    exact: Services, sim: Simulator, clock: FakeClock
) -> None:
    with_settings(exact, poll_max_errors=3)
    exact.policy = replace(exact.policy, jitter=0.0)
    sim.set_status("g-1", "Completed")
    webhook(exact, "g-1")
    sim.add_fault(Fault("garbage", count=3))
    for _ in range(3):
        poll_until_due(exact, clock, "g-1")
    gave_up = exact.store.get("g-1")
    assert gave_up is not None
    assert (gave_up.polling_gave_up, gave_up.next_poll_at, gave_up.poll_errors) == (True, None, 3)
    clock.advance(10**5)
    assert poll_once(exact).claimed == 0
    assert len(sim.fetches("g-1")) == 3
    webhook(exact, "g-1")
    assert poll_until_due(exact, clock, "g-1") == 1.0
    assert exact.store.get("g-1").status == "completed"  # type: ignore[union-attr]


def test_instances_past_their_ttl_expire_and_yield_to_a_real_completion(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    sim.create("x-1")
    register(services, "x-1")
    clock.advance(services.settings.instance_ttl + 1)
    assert usecases.expire(services, clock()) == 1
    assert services.store.get("x-1").status == "expired"  # type: ignore[union-attr]
    sim.set_status("x-1", "Failed")
    webhook(services, "x-1")
    clock.advance(1)
    poll_once(services)
    assert services.store.get("x-1").status == "failed"  # type: ignore[union-attr]
    events = services.store.events_after(0, 10)
    assert [(e["previous_status"], e["status"]) for e in events] == [
        ("in_progress", "expired"),
        ("expired", "failed"),
    ]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_both_state_api_versions_reach_truth(
    services: Services, sim: Simulator, clock: FakeClock, version: str
) -> None:
    services.gbg = gbg_client(sim, api_version=version)
    sim.set_status("v-1", "Failed")
    webhook(services, "v-1")
    clock.advance(1)
    poll_once(services)
    assert services.store.get("v-1").status == "failed"  # type: ignore[union-attr]
    assert sim.fetches("v-1")[0]["version"] == version


def test_requests_in_flight_stay_within_the_concurrency_and_one_token_serves_all(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    # Each answer takes 0.5 s of real time, so all eight requests overlap unless one
    # starts that much after the first: the worst start seen late was just over 50 ms
    # (a loaded CI run, PostgreSQL), when this was 0.05 s and read 7 of 8 once in ten runs.
    sim.latency = 0.5
    for n in range(40):
        sim.set_status(f"b-{n}", "Completed")
        webhook(services, f"b-{n}")
    clock.advance(1)
    report = poll_once(services)
    assert (report.claimed, report.final, report.errors) == (40, 40, 0)
    moments = sorted(
        [(c["start"], 1) for c in sim.fetches()] + [(c["end"], -1) for c in sim.fetches()]
    )
    in_flight = [0]
    for _, step in moments:
        in_flight.append(in_flight[-1] + step)
    assert max(in_flight) == services.settings.poll_concurrency  # busy, never more
    assert sim.token_requests == 1
    assert len(sim.fetches()) == 40
