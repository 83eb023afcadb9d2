"""What each operator action does at its edges and the one line it logs: expiry in
batches and only past the TTL, erase, resume, purge with its own period, journey starts.
Operators search the log by these event names and fields."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest

from receiver import fetching, usecases
from receiver.domain.model import FetchFailed
from receiver.errors import GbgError
from receiver.services import Services
from receiver.testing.simulator import Simulator
from receiver.web import create_app
from tests.conftest import API_TOKEN, FakeClock
from tests.test_store import delivery
from tests.test_store_queries import folded

DAY = 86400.0
BEARER = {"Authorization": f"Bearer {API_TOKEN}"}


def lines(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    """The fields of every record of ``event``, besides logging's own."""
    own = set(vars(logging.makeLogRecord({}))) | {"message"}
    return [
        {k: v for k, v in vars(r).items() if k not in own}
        for r in caplog.records
        if r.getMessage() == event
    ]


@pytest.fixture(autouse=True)
def _info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)


def test_expiry_takes_only_instances_past_the_ttl(services: Services, clock: FakeClock) -> None:
    ttl = services.policy.ttl
    usecases.register(services, "old-1", None)
    usecases.register(services, "old-2", None)
    clock.advance(ttl - 100)
    usecases.register(services, "young", None)
    clock.advance(101)  # the old ones are a second past the TTL, the young one is not
    assert usecases.expire(services, clock()) == 2
    assert [services.store.get(i).status for i in ("old-1", "old-2", "young")] == [  # type: ignore[union-attr]
        "expired",
        "expired",
        "in_progress",
    ]


def test_expiry_goes_a_batch_at_a_time(
    services: Services, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(usecases, "EXPIRE_BATCH", 1)
    for n in range(2):
        usecases.register(services, f"b-{n}", None)
    clock.advance(services.policy.ttl + 1)
    assert usecases.expire(services, clock()) == 1  # the worker's next round takes the rest
    assert usecases.expire(services, clock()) == 1
    assert usecases.expire(services, clock()) == 0


def test_erase_logs_only_what_it_erased(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    assert usecases.erase(services, "nobody") is None
    usecases.register(services, "e-1", "ORDER-1")
    assert usecases.erase(services, "e-1") is not None
    assert lines(caplog, "instance.erased") == [{"instance_id": "e-1"}]


def test_resume_logs_how_many_and_which(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    assert usecases.resume_given_up(services, "r-1") == 0
    assert usecases.resume_given_up(services) == 0
    assert lines(caplog, "poll.resumed") == [
        {"resumed": 0, "instance_id": "r-1"},
        {"resumed": 0, "instance_id": None},
    ]


def test_purge_keeps_its_own_period_and_says_what_it_did(
    services: Services, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = services.store
    store.append_delivery(delivery("p-1", at=clock() - 2 * DAY))
    [only] = store.waiting_deliveries(1)
    folded(store, only)
    assert services.settings.retention_days > 2
    assert usecases.purge(services) == (0, 0)  # within the configured retention
    assert usecases.purge(services, days=1) == (1, 0)  # an operator's shorter period
    assert lines(caplog, "retention.purged") == [
        {"rows_deleted": 0, "instances_forgotten": 0, "days": services.settings.retention_days},
        {"rows_deleted": 1, "instances_forgotten": 0, "days": 1},
    ]


def test_a_journey_start_asks_gbg_for_that_resource_and_logs_it(
    services: Services, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    decision = usecases.start_journey(services, "age-check@2", {}, "ORDER-7")
    instance_id = decision.instance.instance_id
    assert sim.instances[instance_id].resource_id == "age-check@2"
    assert lines(caplog, "journey.started") == [
        {"instance_id": instance_id, "resource_id": "age-check@2"}
    ]


def test_an_operators_poll_leaves_no_lease_behind(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    sim.set_status("p-1", "InProgress")
    usecases.register(services, "p-1", None)
    assert usecases.poll_now(services, "p-1") is not None
    assert services.store.leases() == []  # a worker may take it at once


def test_a_journey_start_without_gbg_configured_says_which_settings(services: Services) -> None:
    client = create_app(services=replace(services, gbg=None)).test_client()
    answer = client.post("/api/v1/journeys", json={"resourceId": "x@latest"}, headers=BEARER)
    problem = answer.get_json()
    assert (answer.status_code, problem["type"]) == (503, "/problems/gbg-not-configured")
    assert problem["detail"] == "set RECEIVER_GBG_CLIENT_ID and _CLIENT_SECRET"


def test_a_healthy_inbox_folds_in_batches_never_one_by_one(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone: list[int] = []
    one_by_one = usecases._fold_alone
    monkeypatch.setattr(usecases, "_fold_alone", lambda s, d: alone.append(d) or one_by_one(s, d))
    for n in range(3):
        services.store.append_delivery(delivery(f"h-{n}"))
    assert usecases.fold_inbox(services, limit=2) == 2  # the oldest two, in one transaction
    assert usecases.fold_inbox(services, limit=2) == 1
    assert alone == []  # the one-by-one path is for a delivery that cannot be folded
    assert all(services.store.get(f"h-{n}") is not None for n in range(3))


def test_a_start_or_a_fetch_without_gbg_says_gbg_is_not_configured(services: Services) -> None:
    unconfigured = replace(services, gbg=None)
    with pytest.raises(GbgError, match=r"^GBG is not configured$"):
        usecases.start_journey(unconfigured, "x@latest", {}, None)
    with pytest.raises(GbgError, match=r"^GBG is not configured$"):
        fetching.fetch(unconfigured, "x-1")


def test_an_operators_poll_holds_the_lease_and_yields_to_a_worker_that_took_it_after(
    services: Services, sim: Simulator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.set_status("p-1", "Completed", "Of Age")
    usecases.register(services, "p-1", None)
    assert services.gbg is not None
    fetch_state = services.gbg.fetch_state
    taken: list[bool] = []

    def slow(instance_id: str) -> Any:
        taken.append(services.store.claim("p-1", "worker", clock(), 30))  # held: refused
        clock.advance(services.settings.poll_lease + 1)  # the operator's lease runs out
        taken.append(services.store.claim("p-1", "worker", clock(), 30))  # a worker takes it
        return fetch_state(instance_id)

    monkeypatch.setattr(services.gbg, "fetch_state", slow)
    instance = usecases.poll_now(services, "p-1")
    assert taken == [False, True]
    assert instance is not None
    assert instance.status == "in_progress"  # the worker's fetch is the one to keep
    assert [owner for _, owner, _ in services.store.leases()] == ["worker"]


def test_a_lost_lease_skips_that_instance_alone_in_a_batch(
    store_services: Services, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    services, store = store_services, store_services.store
    for instance_id in ("l-1", "l-2"):
        usecases.register(services, instance_id, None)
    assert store.claim("l-1", "other", clock(), 30)  # another worker holds l-1 now
    assert store.claim("l-2", "w", clock(), 30)
    failed = [(FetchFailed(i, "http_500", started_at=clock()), clock()) for i in ("l-1", "l-2")]
    lost, kept = usecases.fold(store, services.policy, failed, lease_owner="w", forward=False)
    assert (lost.instance.poll_errors, lost.event, lost.created) == (0, None, False)
    assert kept.instance.poll_errors == 1
    assert [store.get(i).poll_errors for i in ("l-1", "l-2")] == [0, 1]  # type: ignore[union-attr]
    assert lines(caplog, "poll.lease_lost") == [{"instance_id": "l-1"}]


def test_a_fold_under_a_lease_gives_it_back_even_when_nothing_changed(
    store_services: Services, clock: FakeClock
) -> None:
    services, store = store_services, store_services.store
    usecases.register(services, "u-1", None)
    outage = FetchFailed("u-1", "http_503", started_at=clock(), gbg_wide=True)
    for _ in range(2):  # the second finds the instance exactly as the first left it
        assert store.claim("u-1", "w", clock(), 30)
        usecases.fold(store, services.policy, [(outage, clock())], lease_owner="w", forward=False)
        assert store.leases() == []
