"""The state-fetch rate shared by every worker: GCRA on one row.

The row holds the earliest time the next fetch may start; every worker moves it
forward in one atomic UPDATE, so the rate holds across all of them.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from receiver.store.schema import FETCH_BUCKET, rate_limits

if TYPE_CHECKING:
    from receiver.store.engine import Database

# Requests leave when their slots come up, give or take a few ms of wake-up jitter; slots
# spaced 5 % wider keep every one-second window within the limit all the same.
HEADROOM = 0.95
_BUCKET = rate_limits.c.name == FETCH_BUCKET
# A slot whose time passed longer ago than this is dropped, never used late: a fetch
# starts within this much of its slot, so every one-second window stays within the rate.
STALE = 0.05


def reserve(
    conn: Connection, now: float, per_second: float, count: int = 1
) -> tuple[list[float], int]:
    """Reserve the next ``count`` free slots; answer when each fetch may start, and the
    GBG-wide failure streak as it stands (so a success knows whether to end it)."""
    step = 1.0 / (per_second * HEADROOM)
    tat = rate_limits.c.tat
    end, failures = conn.execute(
        rate_limits.update()
        .where(_BUCKET)
        .values(tat=sa.case((tat > now, tat), else_=now) + count * step)
        .returning(tat, rate_limits.c.failures)
    ).one()
    first = float(end) - count * step
    return [first + n * step for n in range(count)], int(failures)


def failed(
    conn: Connection, now: float, pause_for: Callable[[int], float | None]
) -> tuple[int, bool]:
    """Count one GBG-wide failure, any worker's; answer the streak and whether every
    fetch is paused now. ``pause_for(streak)`` says how long to pause (None: not yet).

    A failure of a request that left before the pause began is not counted again: the
    pause grows with its probes, not with what was in flight when it started.
    """
    streak, until = conn.execute(
        sa.select(rate_limits.c.failures, rate_limits.c.paused_until)
        .where(_BUCKET)
        .with_for_update()
    ).one()
    if until is not None and now < until:
        return int(streak), True
    streak = int(streak) + 1
    pause = pause_for(streak)
    values: dict[str, Any] = {"failures": streak}
    if pause is not None:
        tat = rate_limits.c.tat
        values |= {
            "paused_until": now + pause,
            "tat": sa.case((tat > now + pause, tat), else_=now + pause),
        }
    conn.execute(rate_limits.update().where(_BUCKET).values(values))
    return streak, pause is not None


def recovered(conn: Connection) -> int:
    """A fetch succeeded: end the streak; answer how long it was."""
    streak = conn.execute(
        sa.select(rate_limits.c.failures).where(_BUCKET).with_for_update()
    ).scalar_one()
    if streak:
        conn.execute(rate_limits.update().where(_BUCKET).values(failures=0, paused_until=None))
    return int(streak)


def standing(conn: Connection) -> tuple[float, int]:
    """When the next fetch may start, and the GBG-wide failure streak."""
    tat, failures = conn.execute(
        sa.select(rate_limits.c.tat, rate_limits.c.failures).where(_BUCKET)
    ).one()
    return float(tat), int(failures)


def pause(conn: Connection, until: float) -> None:
    """Hold every worker's fetches until ``until`` (GBG answered 429 Retry-After)."""
    tat = rate_limits.c.tat
    conn.execute(
        rate_limits.update().where(_BUCKET).values(tat=sa.case((tat > until, tat), else_=until))
    )


class FetchSlots:
    """One process's share of the rate: slots reserved for the threads waiting at once.

    Each thread that needs a slot while others wait adds one to the next reservation,
    so a busy process pays one UPDATE of the shared row for many fetches; a slot
    nobody took in time is dropped (capacity lost, never the limit broken). At high
    rates the slots of the next STALE seconds are reserved in one go as well.
    """

    def __init__(self, db: Database, per_second: float) -> None:
        self._db = db
        self._per_second = per_second
        self._slots: deque[float] = deque()
        self._lock = threading.Lock()
        self._waiting = 0
        self._count = threading.Lock()
        self.failures_seen = 0  # the GBG-wide failure streak at the last reservation
        # Where slots come closer than STALE apart, those in the next STALE seconds are
        # reserved together: any thread of this process can still take them in time.
        self._ahead = int(STALE * per_second * HEADROOM)

    def take(self, now_fn: Callable[[], float]) -> float:
        """When this fetch may start (``now_fn`` is the clock)."""
        with self._count:
            self._waiting += 1
        try:
            with self._lock:
                now = now_fn()
                while self._slots and self._slots[0] < now - STALE:
                    self._slots.popleft()
                if not self._slots:
                    with self._db.write() as conn:
                        with self._count:  # counted late: who came while we waited counts too
                            wanted = max(self._waiting, self._ahead)
                        slots, self.failures_seen = reserve(conn, now, self._per_second, wanted)
                        self._slots.extend(slots)
                return self._slots.popleft()
        finally:
            with self._count:
                self._waiting -= 1
