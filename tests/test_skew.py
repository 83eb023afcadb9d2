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
from tests.appserver import SECRET, App, running, seed_messages, sent_once_at_a_time_in_order
from tests.conftest import PG_URL, empty_tables
from tests.processes import Proc, due_for_pollers, gbg_env, overlapping

pytestmark = [pytest.mark.live, pytest.mark.reliability]

FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
OFFSETS = ("+120s", "-120s")  # one host two minutes ahead, one two minutes behind


@pytest.fixture
def faketime() -> Path:
    if not FAKETIME.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must provide libfaketime (Debian's faketime)")
        pytest.skip("faketime is not installed")
    return FAKETIME


def skewed(env: dict[str, str], offset: str, *, true_monotonic: bool = False) -> dict[str, str]:
    """A host whose wall clock is ``offset`` off.

    By default libfaketime moves its monotonic clock too, and the kernel then waits years
    for a timed wait reckoned on it: a worker's scheduler runs each job once (the
    pollers' first drain goes on until nothing is due, which is all their test needs).
    With ``true_monotonic``, as on a real host, the jobs run on, at a price: each new
    thread costs ~20 ms under the preload, and ``faketime_site`` mends ``time.sleep``,
    whose absolute monotonic deadline libfaketime refuses (EINVAL)."""
    faked = env | {"LD_PRELOAD": str(FAKETIME), "FAKETIME": offset}
    if true_monotonic:
        faked |= {
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "PYTHONPATH": str(Path(__file__).with_name("faketime_site")),
        }
    return faked


def test_pollers_two_minutes_apart_keep_the_rate_and_never_overlap_on_postgres(
    tmp_path: Path,
    procs: list[Proc],
    sim: Simulator,
    pg_engine: sa.Engine,
    figure: Any,
    faketime: Path,
) -> None:
    rate, total = 100, 1500
    ids = [f"skew-{n:05d}" for n in range(total)]
    env = due_for_pollers(tmp_path, sim, pg_engine, ids, rate)
    store = Store(Database(pg_engine))
    pollers = [
        Proc(["poller"], skewed(env, offset), tmp_path / f"poller{offset}.log")
        for offset in OFFSETS
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


def test_forwarders_two_minutes_apart_never_send_one_message_twice_at_once(
    tmp_path: Path, procs: list[Proc], pg_engine: sa.Engine, figure: Any, faketime: Path
) -> None:
    """On their own clocks, the host ahead saw the other's 90 s leases as long expired
    and took over messages while they were on their way."""
    empty_tables(pg_engine)
    store = Store(Database(pg_engine))
    total = 400
    seed_messages(store, [f"fs-{n}" for n in range(total // 2)], time.time())
    with running(App(delay=0.05)) as app:  # each answer takes 50 ms: sends overlap in time
        assert PG_URL
        env = gbg_env(
            tmp_path,
            "http://127.0.0.1:9",  # GBG down: nothing to poll, only messages to send
            RECEIVER_DATABASE_URL=PG_URL,
            RECEIVER_FORWARD_URL=app.url,
            RECEIVER_FORWARD_SECRET=SECRET,
        )
        started = time.monotonic()
        workers = [
            Proc(
                ["poller"],
                skewed(env, offset, true_monotonic=True),
                tmp_path / f"forwarder{offset}.log",
            )
            for offset in OFFSETS
        ]
        procs.extend(workers)
        while store.snapshot(time.time())["outbox_pending"]:
            assert time.monotonic() - started < 120, "forwarding stalled"
            time.sleep(0.2)
        took = time.monotonic() - started
        assert [w.stop() for w in workers] == [0, 0]
    sent_once_at_a_time_in_order(app, total)
    assert app.overlaps == 0
    shares = [w.log.read_text().count('"forward.attempted"') for w in workers]
    assert all(n > 0 for n in shares), shares
    figure(
        f"clock skew: forwarders +120 s and -120 s on PostgreSQL: {total} messages in "
        f"{took:.1f} s, 0 sent twice at once, order kept; per forwarder {shares}"
    )
