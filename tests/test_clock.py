"""The database's clock on PostgreSQL: what this host's wall clock says does not move it,
and what it cannot vouch for it refuses rather than guessing with the local clock."""

from __future__ import annotations

import logging
import socket
import time

import pytest
import sqlalchemy as sa

from receiver import metrics
from receiver.errors import StoreUnavailable
from receiver.store import Store
from receiver.store.clock import BOUND, DRIFT, REFRESH, DatabaseClock
from receiver.store.engine import Database

DOWN = "postgresql+psycopg://postgres@127.0.0.1:9/test"  # nothing listens on port 9


class Ticks:
    """A monotonic clock that moves only when told, ``step`` more on every read."""

    def __init__(self, step: float = 0.0) -> None:
        self.now, self.step = 1000.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_host_two_minutes_ahead_reads_the_database_clock_and_says_how_far_off(
    pg_engine: sa.Engine,
) -> None:
    clock = DatabaseClock(Database(pg_engine), local=lambda: time.time() + 120)
    assert abs(clock() - time.time()) < 0.5  # the database runs here, on the true clock
    assert 119.5 < clock.skew < 120.5


def test_a_wall_clock_stepped_between_measurements_does_not_move_it(
    pg_engine: sa.Engine,
) -> None:
    step = [0.0]
    clock = DatabaseClock(Database(pg_engine), local=lambda: time.time() + step[0])
    clock()
    step[0] = 300.0  # NTP steps this host's clock five minutes on, within the minute
    assert abs(clock() - time.time()) < 0.5


def test_before_any_measurement_nothing_is_read_and_the_host_is_named_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = DatabaseClock(Database.from_url(DOWN))
    with caplog.at_level(logging.WARNING, "receiver.clock"):
        for _ in range(3):
            with pytest.raises(StoreUnavailable, match="clock is not measured"):
                clock()
    [line] = [r for r in caplog.records if r.getMessage() == "clock.unknown"]
    assert line.host == socket.gethostname()  # type: ignore[attr-defined]
    assert line.host_clock[:4] == time.strftime("%Y")  # type: ignore[attr-defined]


def test_a_held_measurement_serves_while_the_database_is_away_until_its_error_passes_the_bound(
    pg_engine: sa.Engine,
) -> None:
    ticks = Ticks()
    clock = DatabaseClock(Database(pg_engine), monotonic=ticks)
    first = clock()
    clock.db = Database.from_url(DOWN)
    ticks.now += REFRESH * 2  # measured again, in vain: the held one still serves
    assert clock() == pytest.approx(first + REFRESH * 2, abs=0.01)
    ticks.now += BOUND / DRIFT  # hours without a measurement: it may be off by more
    with pytest.raises(StoreUnavailable):
        clock()
    clock.db = Database(pg_engine)
    ticks.now += REFRESH
    clock()  # measured again: served again


def test_a_slow_round_trip_is_kept_only_when_it_says_more_than_the_one_held(
    pg_engine: sa.Engine,
) -> None:
    ticks = Ticks(step=3.0)  # every read of the monotonic clock 3 s on: a 3 s round trip
    clock = DatabaseClock(Database(pg_engine), monotonic=ticks)
    clock.measure()
    assert clock.error(ticks.now) == pytest.approx(1.5 + 3.0 * DRIFT)  # better than none
    ticks.step = 0.0
    clock.measure()
    held = clock.error(ticks.now)
    assert held < 0.5  # a fast one replaces it
    ticks.step = 3.0
    clock.measure()
    assert clock.error(ticks.now - 3.0) == pytest.approx(held + 3.0 * DRIFT)  # kept


def test_a_scrape_before_the_clock_is_measured_says_the_store_is_down() -> None:
    """The processes' own counters are still served: the scrape does not fail with it."""
    store = Store(Database.from_url(DOWN))
    text = metrics.start(None).render(store, DatabaseClock(store.db))[0].decode()
    assert "\ngbg_receiver_store_up 0.0\n" in text
    assert "# TYPE gbg_receiver_webhooks_total counter" in text
