"""Our own store goes away mid-load: 503 + Retry-After, never a 2xx; back within 2 s."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from receiver.testing.simulator import Simulator
from tests.conftest import PG_URL, empty_tables
from tests.processes import (
    API,
    Proc,
    call,
    gbg_env,
    post_webhook,
    run,
    start_web,
)
from tests.tcpproxy import TcpProxy

pytestmark = [pytest.mark.reliability, pytest.mark.live, pytest.mark.postgres]


def test_store_outage_answers_503_and_recovers(  # type: ignore[no-untyped-def]
    tmp_path: Path, procs: list[Proc], sim: Simulator, pg_engine: sa.Engine, figure
) -> None:
    empty_tables(pg_engine)
    assert PG_URL
    url = sa.engine.make_url(PG_URL)
    proxy = TcpProxy(url.port or 5432)
    via_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
    env = gbg_env(
        tmp_path,
        sim.base_url,
        RECEIVER_DATABASE_URL=via_proxy,
        RECEIVER_CONFIRM_DELAY="0.2",
        RECEIVER_GBG_RATE_LIMIT="1000",
        RECEIVER_POLL_CONCURRENCY="32",
    )
    for worker in range(4):
        for n in range(2000):
            sim.set_status(f"out-{worker}-{n}", "Completed")
    assert run(["migrate"], env).returncode == 0
    _, base = start_web(env, tmp_path / "web.log", procs)
    poller = Proc(["poller"], env, tmp_path / "poller.log")
    procs.append(poller)

    answers: list[tuple[float, str, int, str | None]] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        n = 0
        while not stop.is_set():
            iid = f"out-{worker}-{n}"
            status, retry = post_webhook(base, iid)
            answers.append((time.monotonic(), iid, status, retry))
            n += 1
            time.sleep(0.04)

    threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        sim.set_status("late-1", "Completed")  # finished while the store is down
        cut = time.monotonic()
        proxy.sever()
        time.sleep(0.5)
        assert call("GET", f"{base}/readyz")[0] == 503
        call_during = post_webhook(base, "late-1")  # its webhook cannot be stored now
        # The scrape itself still works, and says the store is down.
        assert "\ngbg_receiver_store_up 0.0\n" in scrape(base)
        time.sleep(4)
        restored = time.monotonic()
        proxy.restore()
        time.sleep(4)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert call_during[0] == 503
    during = [a for a in answers if cut + 0.3 <= a[0] < restored]
    ok_during = [a for a in during if 200 <= a[2] < 300]
    refused = [a for a in during if a[2] == 503]
    assert during, "the load generator sent nothing during the cut"
    assert ok_during == []
    assert all(a[3] for a in refused)  # every 503 says when to retry
    back = min(a[0] for a in answers if a[0] >= restored and a[2] == 202) - restored
    assert back <= 2.0
    assert call("GET", f"{base}/readyz")[0] == 200
    assert "\ngbg_receiver_store_up 1.0\n" in scrape(base)
    # GBG's retry after our 503, and the poller resumes without a restart.
    assert post_webhook(base, "late-1")[0] == 202
    deadline = time.monotonic() + 15
    while call("GET", f"{base}/api/v1/instances/late-1", headers=API)[1]["status"] != "completed":
        assert time.monotonic() < deadline, poller.log.read_text()[-2000:]
        time.sleep(0.2)
    accepted = {a[1] for a in answers if a[2] == 202}
    with pg_engine.connect() as conn:
        stored = set(conn.execute(sa.text("SELECT instance_id FROM deliveries")).scalars())
    assert accepted - stored == set()
    assert poller.popen.poll() is None  # never restarted
    proxy.close()
    figure(
        f"store outage: {len(during)} webhooks during a 4 s cut -> {len(refused)} x 503 with "
        f"Retry-After, {len(ok_during)} x 2xx; first 2xx {back:.2f} s after restore; "
        f"{len(accepted)} accepted, {len(accepted - stored)} lost; poller resumed unrestarted"
    )


def scrape(base: str) -> str:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as answer:
        return str(answer.read().decode())
