"""The database's clock, for everything several hosts share.

Leases, the shared fetch rate, GBG-wide pauses, outbox leases and retention cut-offs are
times that one process writes and another compares. Each process reads them on the
clock of the database they all share, not its own: on PostgreSQL, ``DatabaseClock`` is
the database's ``clock_timestamp()`` as last measured, carried forward on this host's
monotonic clock; it is measured at start and again every ``REFRESH`` seconds. A host
whose wall clock is off by minutes, or is stepped between two measurements, still
claims, waits and leases on the shared one.

What it cannot vouch for it refuses: until a first measurement, or once the error it may
carry (half the measuring round trip, plus a generous monotonic drift since) passes
``BOUND``, reading it raises ``StoreUnavailable``: nothing is claimed or leased on this
host's own clock, and a log line names the host and what its clock says. SQLite is one
host: its clock is the local one.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa

from receiver.errors import StoreUnavailable
from receiver.store.engine import Database

log = logging.getLogger("receiver.clock")

REFRESH = 60.0  # seconds between measurements
SKEW_WARNING = 10.0  # a host off by more than this is said in the log
BOUND = 10.0  # the most error this clock may carry and still be read
DRIFT = 1e-3  # the most a monotonic clock runs off, in seconds per second (ten times NTP's)


class DatabaseClock:
    """``clock()``: now, in seconds since the epoch, on the database's clock."""

    def __init__(
        self,
        db: Database,
        local: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db, self.local, self.monotonic = db, local, monotonic
        self.skew = 0.0  # this host's wall clock minus the database's, when last measured
        # The measurement in use, replaced whole: the database's time minus the monotonic
        # clock, half its round trip, and when (monotonic) it was taken.
        self._held: tuple[float, float, float] | None = None
        self._tried_at: float | None = None
        self._refused = False
        self._lock = threading.Lock()

    def __call__(self) -> float:
        now = self.monotonic()
        if self._tried_at is None or now - self._tried_at >= REFRESH:
            self.measure()
            now = self.monotonic()
        held = self._held
        if held is None or self.error(now) > BOUND:
            raise self._refusal(now)
        self._refused = False
        return held[0] + now

    def error(self, now: float) -> float:
        """The most the clock may be off at ``now`` (monotonic): inf before a measurement."""
        if self._held is None:
            return math.inf
        _, error, taken = self._held
        return error + (now - taken) * DRIFT

    def measure(self) -> None:
        """Measure the database's clock again, keeping the better of the new and the held."""
        first = self._held is None  # then every reader waits for the one measurement
        if not self._lock.acquire(blocking=first):
            return  # another thread is measuring; its figure will do
        try:
            if first and self._held is not None:
                return  # measured while this thread waited
            before = self.monotonic()
            try:
                with self.db.read() as conn:
                    theirs = float(
                        conn.execute(
                            sa.select(sa.extract("epoch", sa.func.clock_timestamp()))
                        ).scalar_one()
                    )
            except StoreUnavailable:
                self._tried_at = before  # try again after REFRESH; keep what is held
                return
            after = self.monotonic()
            self._tried_at = after
            error = (after - before) / 2
            if error > self.error(after):
                return  # a slow round trip says less than the measurement held
            self._held = (theirs - (before + after) / 2, error, after)
            self.skew = self.local() - (self._held[0] + self.monotonic())
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

    def _refusal(self, now: float) -> StoreUnavailable:
        if not self._refused:  # said once, not on every read
            self._refused = True
            error = self.error(now)
            log.warning(
                "clock.unknown",
                extra={
                    "host": socket.gethostname(),
                    "host_clock": datetime.fromtimestamp(self.local(), UTC).isoformat(),
                    "error_seconds": round(error, 3) if math.isfinite(error) else None,
                    "claiming": "nothing until the database's clock is measured",
                },
            )
        return StoreUnavailable("the database's clock is not measured: nothing is claimed")


def shared_clock(db: Database) -> Callable[[], float]:
    """The clock for what several hosts share: the database's on PostgreSQL."""
    return DatabaseClock(db) if db.is_postgres else time.time
