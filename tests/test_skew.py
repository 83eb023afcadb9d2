"""Hosts whose clocks disagree share one clock, the database's: two real pollers on
PostgreSQL, one two minutes ahead and one two minutes behind (libfaketime), against the
simulator. Measured before: polling all but stopped (the host ahead pushed the shared
rate cursor two minutes into the future; the host behind saw nothing due)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from receiver.store import Store
from receiver.store.engine import Database
from receiver.testing.simulator import Simulator
from tests.conftest import PG_URL, empty_tables
from tests.processes import Proc, gbg_env, overlapping, seed_due

pytestmark = [pytest.mark.live, pytest.mark.reliability]

FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


def test_pollers_two_minutes_apart_keep_the_rate_and_never_overlap_on_postgres(
    tmp_path: Path, procs: list[Proc], sim: Simulator, pg_engine: sa.Engine, figure: Any
) -> None:
    if not FAKETIME.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must provide libfaketime (Debian's faketime)")
        pytest.skip("faketime is not installed")
    empty_tables(pg_engine)
    assert PG_URL
    rate, total = 100, 1500
    store = Store(Database(pg_engine))
    now = time.time()
    ids = [f"skew-{n:05d}" for n in range(total)]
    seed_due(pg_engine, sim, ids, now)
    sim.latency = 0.02
    env = gbg_env(
        tmp_path,
        sim.base_url,  # type: ignore[attr-defined]
        RECEIVER_DATABASE_URL=PG_URL,
        RECEIVER_GBG_RATE_LIMIT=str(rate),
    )
    offsets = ("+120s", "-120s")
    pollers = [
        Proc(
            ["poller"],
            env | {"LD_PRELOAD": str(FAKETIME), "FAKETIME": offset},
            tmp_path / f"poller{offset}.log",
        )
        for offset in offsets
    ]
    procs += pollers
    deadline = time.monotonic() + total / rate * 2 + 30
    while store.page(status="in_progress", limit=1, after=None):
        assert time.monotonic() < deadline, "polling stalled"
        time.sleep(0.5)
    assert [p.stop() for p in pollers] == [0, 0]

    calls = sim.fetches()
    spans, overlaps = overlapping(calls)
    starts = sorted(c["start"] for c in calls)
    took = starts[-1] - starts[0]
    achieved = (len(calls) - 1) / took
    skews = [
        json.loads(line)["skew_seconds"]
        for p in pollers
        for line in p.log.read_text().splitlines()
        if '"clock.skew"' in line
    ]
    by_poller = [p.log.read_text().count('"poll.fetched"') for p in pollers]
    assert overlaps == 0
    assert sorted(spans) == sorted(ids)
    assert all(len(s) == 1 for s in spans.values())  # no lease stolen: each fetched once
    assert achieved <= rate * 1.05  # the shared rate held
    assert took <= total / rate * 1.3 + 5  # and not stalled behind a cursor in the future
    assert all(n > 0 for n in by_poller), by_poller
    assert any(118 < s < 122 for s in skews), skews  # each host says how far off it is
    assert any(-122 < s < -118 for s in skews), skews
    assert store.leases() == []
    figure(
        f"clock skew: pollers +120 s and -120 s on PostgreSQL: {len(calls)} fetches of "
        f"{total} in {took:.1f} s ({achieved:.0f}/s, limit {rate}), {overlaps} overlapping, "
        f"per poller {by_poller}"
    )
