"""Forwarding by real worker processes: kill -9 mid-send, and four workers on PostgreSQL."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from receiver import usecases
from receiver.domain.model import Fetched, Registered
from receiver.domain.schedule import Policy
from receiver.migrations import upgrade
from receiver.store import Store
from receiver.store.engine import Database
from tests.appserver import (
    DONE,
    SECRET,
    App,
    running,
    seed_messages,
    sent_once_at_a_time_in_order,
)
from tests.conftest import PG_URL, empty_tables
from tests.processes import Proc, gbg_env, run, wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.live]


def forwarding_env(tmp_path: Path, app: App, **extra: str) -> dict[str, str]:
    """A worker whose GBG is down (nothing to poll) and whose application is ``app``."""
    return gbg_env(
        tmp_path,
        "http://127.0.0.1:9",
        RECEIVER_FORWARD_URL=app.url,
        RECEIVER_FORWARD_SECRET=SECRET,
        **extra,
    )


def test_a_worker_killed_mid_send_sends_again_after_restart(  # type: ignore[no-untyped-def]
    tmp_path: Path, procs: list[Proc], figure
) -> None:
    with running(App(hang=threading.Event())) as app:
        env = forwarding_env(tmp_path, app, RECEIVER_POLL_LEASE="2")
        assert run(["migrate"], env).returncode == 0
        store = Store.from_url(env["RECEIVER_DATABASE_URL"])
        now = time.time()
        changes = [(Registered("k-1"), now), (Fetched("k-1", DONE), now)]
        usecases.fold(store, Policy(), changes, forward=True)
        first = Proc(["poller"], env, tmp_path / "first.log")
        procs.append(first)
        wait_for(lambda: app.received, 20)  # the message is on its way: the app holds it
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        assert app.hang is not None
        app.hang.set()  # too late: nobody reads this answer
        killed_at = time.monotonic()
        second = Proc(["poller"], env, tmp_path / "second.log")
        procs.append(second)
        wait_for(lambda: store.messages(status="delivered", limit=1), 30)
        again = time.monotonic() - killed_at
        ids = {r.webhook_id for r in app.received}
        assert len(app.received) == 2
        assert app.unverified == 0
        [message] = store.messages(status="delivered", limit=1)
        assert ids == {f"msg_gbgr_{message.seq}"}  # the same id: the app can tell
        assert second.stop() == 0
        store.engine.dispose()
    figure(
        f"forward kill -9: worker killed mid-send; the message arrived again {again:.1f} s "
        f"later (lease 2 s), same webhook-id, verified"
    )


@pytest.mark.postgres
@pytest.mark.parametrize("count", [2, 4])
def test_workers_send_2000_messages_in_order_never_twice_at_once(  # type: ignore[no-untyped-def]
    tmp_path: Path, procs: list[Proc], pg_engine: sa.Engine, figure, count: int
) -> None:
    empty_tables(pg_engine)
    upgrade(pg_engine)
    store = Store(Database(pg_engine))
    now = time.time()
    seed_messages(store, [f"fw-{n}" for n in range(1000)], now)
    assert store.snapshot(now)["outbox_pending"] == 2000
    with running(App()) as app:
        assert PG_URL
        env = forwarding_env(tmp_path, app, RECEIVER_DATABASE_URL=PG_URL)
        started = time.monotonic()
        workers = [Proc(["poller"], env, tmp_path / f"worker-{n}.log") for n in range(count)]
        procs.extend(workers)
        wait_for(lambda: store.snapshot(time.time())["outbox_pending"] == 0, 120)
        took = time.monotonic() - started
        assert [w.stop() for w in workers] == [0] * count
    sent_once_at_a_time_in_order(app, 2000)
    shares = [w.log.read_text().count('"forward.attempted"') for w in workers]
    assert all(n > 0 for n in shares), shares
    figure(
        f"forward {count} workers (pg): 2000 messages of 1000 instances in {took:.1f} s "
        f"({2000 / took:.0f}/s), 0 sent twice at once, order kept; per worker {shares}"
    )
