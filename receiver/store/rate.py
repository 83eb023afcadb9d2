"""The state-fetch rate shared by every worker: GCRA on one row.

The row holds the earliest time the next fetch may start; every worker moves it
forward in one atomic UPDATE, so the rate holds across all of them.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

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


def reserve(conn: Connection, now: float, per_second: float, count: int = 1) -> list[float]:
    """Reserve the next ``count`` free slots; answer when each fetch may start."""
    step = 1.0 / (per_second * HEADROOM)
    tat = rate_limits.c.tat
    end = conn.execute(
        rate_limits.update()
        .where(_BUCKET)
        .values(tat=sa.case((tat > now, tat), else_=now) + count * step)
        .returning(tat)
    ).scalar_one()
    first = float(end) - count * step
    return [first + n * step for n in range(count)]


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
                        self._slots.extend(reserve(conn, now, self._per_second, wanted))
                return self._slots.popleft()
        finally:
            with self._count:
                self._waiting -= 1
