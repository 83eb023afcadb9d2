"""One fetch: when it may start (its slot, waited for on the clock, bounded for an
operator), when it began, how long GBG took, and what it is counted as."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY

from receiver import fetching, usecases
from receiver.errors import Throttled
from receiver.services import Services
from receiver.store.rate import HEADROOM, FetchSlots
from receiver.testing.simulator import Simulator
from tests.conftest import FakeClock

GAP = 1 / (100 * HEADROOM)  # between slots at 100 fetches a second, kept under the rate


def test_a_fetch_waits_for_its_slot_and_says_when_it_began_and_how_long_gbg_took(
    services: Services, sim: Simulator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.slots = FetchSlots(services.store.db, 100)  # slots about 10 ms apart
    sim.set_status("s-1", "InProgress")
    ticks = iter([100.0, 100.123456, 200.0, 200.5])  # the monotonic clock around each call
    monkeypatch.setattr(fetching, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    start, counted = clock(), fetches_ok()
    first = fetching.fetch(services, "s-1")
    second = fetching.fetch(services, "s-1")  # the next slot: waited for
    assert clock() == pytest.approx(start + GAP, abs=1e-9)
    assert first.observation.started_at == start
    assert second.observation.started_at == pytest.approx(start + GAP, abs=1e-9)
    assert (first.seconds, first.observation.seconds) == (pytest.approx(0.123456), 0.1235)
    assert second.seconds == 0.5
    assert fetches_ok() == counted + 2


def fetches_ok() -> float:
    return REGISTRY.get_sample_value("gbg_receiver_gbg_fetches_total", {"outcome": "ok"}) or 0.0


def test_an_operators_poll_waits_up_to_its_bound_and_no_longer(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    sim.set_status("b-1", "Completed", "Of Age")
    usecases.register(services, "b-1", None)
    services.store.pause_fetches(clock() + usecases.OPERATOR_WAIT)
    polled = usecases.poll_now(services, "b-1")  # exactly the bound away: waited for
    assert polled is not None
    assert polled.status == "completed"
    services.store.pause_fetches(clock() + usecases.OPERATOR_WAIT + 0.5)
    with pytest.raises(Throttled):
        usecases.poll_now(services, "b-1")
