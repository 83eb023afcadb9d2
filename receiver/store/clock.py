"""The database's clock, for everything several hosts share.

Leases, the shared fetch rate, GBG-wide pauses, outbox leases and retention cut-offs are
times that one process writes and another compares. Each process reads them on the
clock of the database they all share, not its own: on PostgreSQL, ``DatabaseClock`` is
the local clock plus the offset to the database's ``clock_timestamp()``, measured at
start and again every ``REFRESH`` seconds (half a round trip of error at most). A host
whose clock is off by minutes then still claims, waits and leases on the shared one.
SQLite is one host: its clock is the local one.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from receiver.errors import StoreUnavailable
from receiver.store.engine import Database

log = logging.getLogger("receiver.clock")

REFRESH = 60.0  # seconds between measurements
SKEW_WARNING = 10.0  # a host off by more than this is said in the log
MAX_ROUND_TRIP = 1.0  # a slower measurement says too little: the last one stands


class DatabaseClock:
    """``clock()``: now, in seconds since the epoch, on the database's clock."""

    def __init__(self, db: Database, local: Callable[[], float] = time.time) -> None:
        self.db, self.local = db, local
        self.skew = 0.0  # this host's clock minus the database's
        self._measured_at: float | None = None
        self._lock = threading.Lock()

    def __call__(self) -> float:
        now = self.local()
        if self._measured_at is None or now - self._measured_at >= REFRESH:
            self.measure()
            now = self.local()  # the measurement took a round trip
        return now - self.skew

    def measure(self) -> None:
        """Measure the skew again (if the database answers, and quickly)."""
        if not self._lock.acquire(blocking=False):
            return  # another thread is measuring; its figure will do
        try:
            before = self.local()
            try:
                with self.db.read() as conn:
                    theirs = float(
                        conn.execute(
                            sa.select(sa.extract("epoch", sa.func.clock_timestamp()))
                        ).scalar_one()
                    )
            except StoreUnavailable:
                self._measured_at = before  # try again after REFRESH; keep the last skew
                return
            after = self.local()
            self._measured_at = after
            if after - before > MAX_ROUND_TRIP:
                return
            self.skew = (before + after) / 2 - theirs
            if abs(self.skew) > SKEW_WARNING:
                log.warning(
                    "clock.skew",
                    extra={
                        "host": socket.gethostname(),
                        "skew_seconds": round(self.skew, 3),
                        "using": "the database's clock",
                    },
                )
        finally:
            self._lock.release()


def shared_clock(db: Database) -> Callable[[], float]:
    """The clock for what several hosts share: the database's on PostgreSQL."""
    return DatabaseClock(db) if db.is_postgres else time.time
