"""The shared fetch rate, rule by rule, on the store itself: slots, GBG-wide failures,
pauses and recovery."""

from __future__ import annotations

import math

import pytest

from receiver.store import Store, rate
from receiver.store.rate import FetchSlots


def pause_after_three(streak: int) -> float | None:
    return 60.0 if streak >= 3 else None


def test_each_reservation_moves_the_shared_cursor_by_its_slots(store: Store) -> None:
    step = 1.0 / (20.0 * rate.HEADROOM)
    with store.db.write() as conn:
        assert rate.reserve(conn, 1000.0, 20.0) == ([1000.0], 0)  # one slot unless asked
        slots, failures = rate.reserve(conn, 1000.0, 20.0, 3)
    assert failures == 0
    assert slots == pytest.approx([1000.0 + step, 1000.0 + 2 * step, 1000.0 + 3 * step])
    assert store.fetch_standing() == (pytest.approx(1000.0 + 4 * step), 0)
    with store.db.write() as conn:  # later than the cursor: from now, not from then
        assert rate.reserve(conn, 2000.0, 20.0) == ([2000.0], 0)


def test_a_failure_during_a_pause_is_not_counted_again(store: Store) -> None:
    assert [store.gbg_failed(100.0, pause_after_three) for _ in range(3)] == [
        (1, False),
        (2, False),
        (3, True),
    ]
    assert store.fetch_standing() == (160.0, 3)  # every fetch waits out the pause
    assert store.gbg_failed(159.0, pause_after_three) == (3, True)  # in flight: not counted
    assert store.gbg_failed(160.0, pause_after_three) == (4, True)  # the probe after it is
    assert store.fetch_standing() == (220.0, 4)


def test_a_pause_never_moves_the_cursor_back(store: Store) -> None:
    with store.db.write() as conn:
        rate.reserve(conn, 1000.0, 1.0, 200)  # booked far ahead
    far = store.fetch_standing()[0]
    assert far > 1100.0
    store.pause_fetches(1050.0)  # a 429's Retry-After that ends sooner
    assert store.fetch_standing()[0] == far
    for _ in range(3):
        store.gbg_failed(1000.0, pause_after_three)
    assert store.fetch_standing()[0] == far
    store.pause_fetches(far + 10)
    assert store.fetch_standing()[0] == far + 10


def test_one_success_ends_the_streak_and_the_pause(store: Store) -> None:
    for _ in range(3):
        store.gbg_failed(100.0, pause_after_three)
    assert store.gbg_recovered() == 3
    assert store.gbg_recovered() == 0
    assert store.fetch_standing()[1] == 0
    assert store.gbg_failed(101.0, pause_after_three) == (1, False)  # the pause is over too
    assert store.snapshot(101.0)["gbg_paused_for"] == 0.0


def test_a_slot_is_used_up_to_stale_seconds_late_and_dropped_after(store: Store) -> None:
    slots = FetchSlots(store.db, 1000.0)  # slots close together: several reserved at once
    now = 500.0
    assert slots.take(lambda: now) == 500.0
    reserved = store.fetch_standing()[0]
    second, third = slots._slots[0], slots._slots[1]  # the slots this process holds
    now = second + rate.STALE
    while now - rate.STALE > second:  # exactly STALE late, to the last bit
        now = math.nextafter(now, 0.0)
    while now - rate.STALE < second:
        now = math.nextafter(now, math.inf)
    assert now - rate.STALE == second
    assert slots.take(lambda: now) == second  # exactly STALE late: still used
    now = math.nextafter(third + rate.STALE, math.inf)
    assert slots.take(lambda: now) > third  # any later: dropped, the next one taken
    assert store.fetch_standing()[0] == reserved  # all from what was reserved at first


def test_a_thread_alone_reserves_one_slot_at_a_time(store: Store) -> None:
    slots, step = FetchSlots(store.db, 1.0), 1.0 / rate.HEADROOM
    assert [slots.take(lambda: 1000.0) for _ in range(6)] == pytest.approx(
        [1000.0 + n * step for n in range(6)]
    )
    assert store.fetch_standing()[0] == pytest.approx(1000.0 + 6 * step)  # none reserved idle


def test_at_high_rates_the_next_stale_seconds_are_reserved_together(store: Store) -> None:
    slots, step = FetchSlots(store.db, 1000.0), 1.0 / (1000.0 * rate.HEADROOM)
    assert slots.take(lambda: 1000.0) == 1000.0
    reserved = (store.fetch_standing()[0] - 1000.0) / step
    assert reserved == pytest.approx(round(reserved))
    assert rate.STALE - step < reserved * step <= rate.STALE  # as many as fit in STALE
