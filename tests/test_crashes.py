"""kill -9 under load: nothing acknowledged is lost, no instance is left unknown; many
pollers never fetch one instance at once and hold the shared rate limit."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from bisect import bisect_left
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from receiver.store import Store
from receiver.store.engine import Database, make_engine
from receiver.testing.simulator import Simulator
from tests.conftest import PG_URL, empty_tables
from tests.processes import (
    Proc,
    due_for_pollers,
    gbg_env,
    overlapping,
    post_webhook,
    run,
    start_web,
)

pytestmark = [pytest.mark.reliability, pytest.mark.live]


def ledger_under_crashes(  # type: ignore[no-untyped-def]
    tmp_path: Path,
    procs: list[Proc],
    sim: Simulator,
    database_url: str,
    *,
    total: int,
    seconds: float,
    figure,
    label: str,
) -> None:
    env = gbg_env(
        tmp_path,
        sim.base_url,  # type: ignore[attr-defined]
        RECEIVER_DATABASE_URL=database_url,
        RECEIVER_WEB_WORKERS="3",
        RECEIVER_CONFIRM_DELAY="0.5",
        RECEIVER_GBG_RATE_LIMIT="400",
        RECEIVER_POLL_LEASE="5",
        RECEIVER_POLL_CONCURRENCY="16",
    )
    assert run(["migrate"], env).returncode == 0
    ids = [f"{label}-{n:05d}" for n in range(total)]
    for iid in ids:
        sim.set_status(iid, "Completed", "Of Age")  # every journey has ended at GBG
    web, base = start_web(env, tmp_path / "web.log", procs)
    pollers = [Proc(["poller"], env, tmp_path / "poller-0.log")]
    procs += pollers

    answers: dict[str, int] = {}
    stop = threading.Event()
    kills = Counter()
    rng = random.Random(3)  # noqa: S311 - picks a worker to kill, nothing secret

    def killer() -> None:
        next_poller_kill = time.monotonic() + seconds / 3
        while not stop.wait(2.5):
            workers = [
                int(p)
                for p in Path(f"/proc/{web.popen.pid}/task/{web.popen.pid}/children")
                .read_text()
                .split()
            ]
            if workers:
                os.kill(rng.choice(workers), signal.SIGKILL)
                kills["web worker"] += 1
            if time.monotonic() >= next_poller_kill and kills["poller"] < 2:
                os.kill(pollers[-1].popen.pid, signal.SIGKILL)
                kills["poller"] += 1
                next_poller_kill += seconds / 3
                time.sleep(1)  # as systemd's RestartSec would
                pollers.append(Proc(["poller"], env, tmp_path / f"poller-{len(pollers)}.log"))
                procs.append(pollers[-1])

    killing = threading.Thread(target=killer)
    killing.start()
    pace = seconds / total * 8  # 8 senders share the schedule
    started = time.monotonic()

    def send(n: int) -> None:
        time.sleep(max(0.0, started + n * pace / 8 - time.monotonic()))
        answers[ids[n]] = post_webhook(base, ids[n])[0]

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(total)))
    stop.set()
    killing.join()
    load_seconds = time.monotonic() - started

    accepted = {i for i, status in answers.items() if 200 <= status < 300}
    engine = make_engine(database_url)
    store = Store(Database(engine))

    def unfinished() -> set[str]:
        with engine.connect() as conn:
            done = set(
                conn.execute(
                    sa.text("SELECT instance_id FROM instances WHERE status = 'completed'")
                ).scalars()
            )
        return accepted - done

    deadline = time.monotonic() + 120
    while unfinished() and time.monotonic() < deadline:
        time.sleep(0.5)
    with engine.connect() as conn:
        delivered = set(conn.execute(sa.text("SELECT instance_id FROM deliveries")).scalars())
        changes = conn.execute(
            sa.text(
                "SELECT instance_id, status, count(*) FROM events GROUP BY instance_id, status "
                "HAVING count(*) > 1"
            )
        ).all()
    now = time.time()
    stale = [lease for lease in store.leases() if lease[2] < now]
    lost, unknown = accepted - delivered, unfinished()
    engine.dispose()
    assert kills["web worker"] >= 3
    assert kills["poller"] == 2
    assert len(accepted) >= total * 0.9, Counter(answers.values())
    assert lost == set()
    assert unknown == set()
    assert changes == []
    assert stale == []
    figure(
        f"crash ledger ({label}): {total} webhooks in {load_seconds:.0f} s, "
        f"{kills['web worker']} web workers and {kills['poller']} pollers killed -9; "
        f"{len(accepted)} acknowledged, {len(lost)} lost, {len(unknown)} unknown, "
        f"{len(changes)} duplicate status changes, {len(stale)} leases past expiry"
    )


@pytest.mark.postgres
def test_ledger_under_kill_9_on_postgres(  # type: ignore[no-untyped-def]
    tmp_path: Path, procs: list[Proc], sim: Simulator, pg_engine: sa.Engine, figure
) -> None:
    empty_tables(pg_engine)
    assert PG_URL
    ledger_under_crashes(
        tmp_path, procs, sim, PG_URL, total=5000, seconds=60, figure=figure, label="pg"
    )


def test_ledger_under_kill_9_on_sqlite(  # type: ignore[no-untyped-def]
    tmp_path: Path, procs: list[Proc], sim: Simulator, figure
) -> None:
    ledger_under_crashes(
        tmp_path,
        procs,
        sim,
        f"sqlite:///{tmp_path / 'ledger.db'}",
        total=1500,
        seconds=20,
        figure=figure,
        label="lite",
    )


def busiest_second(times: list[float]) -> int:
    """The most events in any window [t, t + 1 s) of sorted ``times``."""
    return max((bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


@pytest.mark.postgres
def test_four_pollers_never_overlap_and_hold_the_rate(  # type: ignore[no-untyped-def]
    tmp_path: Path, procs: list[Proc], sim: Simulator, pg_engine: sa.Engine, figure
) -> None:
    rate, total = 250, 10_000
    ids = [f"many-{n:05d}" for n in range(total)]
    env = due_for_pollers(tmp_path, sim, pg_engine, ids, rate)
    store = Store(Database(pg_engine))
    pollers = [Proc(["poller"], env, tmp_path / f"poller-{n}.log") for n in range(4)]
    procs += pollers
    deadline = time.monotonic() + total / rate + 60
    while time.monotonic() < deadline:
        page = store.page(status="in_progress", limit=1, after=None)
        if not page:
            break
        time.sleep(0.5)
    assert [p.stop() for p in pollers] == [0, 0, 0, 0]
    calls = sim.fetches()
    by_instance, overlaps = overlapping(calls)
    # What the pollers sent, from their own logs: the rate they keep. What the simulator
    # saw adds its own scheduling noise (it shares this test's process and the 2 cores).
    sent = sorted(
        json.loads(line)["started_at"]
        for p in pollers
        for line in p.log.read_text().splitlines()
        if '"poll.fetched"' in line
    )
    starts = sorted(c["start"] for c in calls)
    busiest = busiest_second(sent)
    seen = busiest_second(starts)
    page = store.page(status="in_progress", limit=10, after=None)
    took = starts[-1] - starts[0]
    assert overlaps == 0
    assert len(sent) == len(calls)
    assert busiest <= rate
    assert seen <= rate * 1.1  # the simulator shares this process: its own stalls bunch arrivals
    assert page == []
    assert set(by_instance) == set(ids)
    assert store.leases() == []
    figure(
        f"4 pollers: {total} instances, {len(calls)} fetches in {took:.0f} s "
        f"({len(calls) / took:.0f}/s), {overlaps} overlapping fetches, busiest second "
        f"{busiest} sent ({seen} seen by the simulator; limit {rate}), {len(page)} left unknown"
    )
