"""Liveness in the store: every worker's heartbeat, and what /readyz, /metrics and the
dashboard say about the workers, on either database; then real processes."""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from receiver import liveness
from receiver.services import Services
from receiver.web import create_app
from tests.conftest import FakeClock, with_settings
from tests.processes import Proc, base_env, call, free_port, run, start_web
from tests.test_dashboard import figure, page, sign_in


@pytest.fixture
def client(store_services: Services) -> FlaskClient:
    return create_app(services=store_services).test_client()


def heartbeat_age(client: FlaskClient) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    [line] = [
        ln
        for ln in text.splitlines()
        if ln.startswith("gbg_receiver_worker_heartbeat_age_seconds ")
    ]
    return float(line.split()[1])


def test_a_store_no_worker_ever_ran_on_is_ready_and_says_so(client: FlaskClient) -> None:
    answer = client.get("/readyz")
    assert (answer.status_code, answer.get_json()) == (
        200,
        {"status": "ready", "clockSkewSeconds": 0.0, "workers": []},
    )
    assert heartbeat_age(client) == math.inf  # an alert on the age fires: nothing polls


def test_readyz_lists_the_workers_and_is_unready_once_none_was_seen_lately(
    store_services: Services, client: FlaskClient, clock: FakeClock
) -> None:
    liveness.beat(store_services, "host-a:11:aaaa")
    clock.advance(4)
    liveness.beat(store_services, "host-b:22:bbbb")
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.get_json()["workers"] == [
        {
            "worker": "host-b:22:bbbb",
            "state": "running",
            "seenSecondsAgo": 0.0,
            "clockSkewSeconds": 0.0,
        },
        {
            "worker": "host-a:11:aaaa",
            "state": "running",
            "seenSecondsAgo": 4.0,
            "clockSkewSeconds": 0.0,
        },
    ]
    assert heartbeat_age(client) == 0.0

    clock.advance(20)  # host-b beats on; host-a has not been heard from for 24 s
    liveness.beat(store_services, "host-b:22:bbbb")
    states = {w["worker"]: w["state"] for w in client.get("/readyz").get_json()["workers"]}
    assert states == {"host-b:22:bbbb": "running", "host-a:11:aaaa": "silent"}

    clock.advance(1)
    liveness.beat(store_services, "host-b:22:bbbb", stopped=True)  # a clean stop
    clock.advance(60)
    assert client.get("/readyz").status_code == 200  # 60 s: the bound itself
    clock.advance(1)
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.mimetype == "application/problem+json"
    body = answer.get_json()
    assert (body["title"], body["detail"]) == (
        "No worker seen",
        "no worker seen for 61 s (RECEIVER_WORKER_STALE_AFTER=60)",
    )
    assert [(w["worker"], w["state"]) for w in body["workers"]] == [
        ("host-b:22:bbbb", "stopped"),
        ("host-a:11:aaaa", "silent"),
    ]
    assert heartbeat_age(client) == 61.0

    liveness.beat(store_services, "host-c:33:cccc")  # a worker starts: ready at once
    assert client.get("/readyz").status_code == 200


def test_a_bound_of_zero_keeps_the_web_ready_without_workers(
    store_services: Services, client: FlaskClient, clock: FakeClock
) -> None:
    with_settings(store_services, worker_stale_after=0.0)
    liveness.beat(store_services, "host-a:11:aaaa")
    clock.advance(3600)
    assert client.get("/readyz").status_code == 200


def test_a_worker_row_is_forgotten_with_retention(
    store_services: Services, clock: FakeClock
) -> None:
    liveness.beat(store_services, "old:1:aaaa", stopped=True)
    clock.advance(100)
    liveness.beat(store_services, "new:2:bbbb")
    store_services.store.purge(before=clock() - 50)
    assert [w["owner"] for w in store_services.store.workers()] == ["new:2:bbbb"]


def test_the_dashboard_shows_the_workers_and_warns_when_none_runs(
    store_services: Services, client: FlaskClient, clock: FakeClock
) -> None:
    sign_in(client)
    html = page(client, "/dashboard/")
    assert "data-workers-none" in html
    assert figure(html, "workers") == "0"
    liveness.beat(store_services, "host-a:11:aaaa")
    html = page(client, "/dashboard/")
    assert figure(html, "workers") == "1"
    assert 'data-worker="host-a:11:aaaa"' in html
    assert "data-workers-" not in html
    clock.advance(90)
    html = page(client, "/dashboard/")
    assert figure(html, "workers") == "0"
    assert "data-workers-stale" in html
    assert "no worker seen for 90 s" in html


@pytest.mark.live
def test_a_real_worker_is_seen_from_the_web_and_its_stop_makes_it_unready(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """`web` and `poller` as two processes on one store (as on two hosts): the web lists
    the worker; once it stops and the bound passes, the web is not ready, and says why.
    The container's heartbeat file goes to systemd's RuntimeDirectory when one is given;
    the worker serves its own /metrics where RECEIVER_WORKER_METRICS_BIND says."""
    runtime = tmp_path / "run"
    runtime.mkdir()
    scrape = f"127.0.0.1:{free_port()}"
    env = base_env(
        tmp_path,
        RECEIVER_GBG_BASE_URL="http://127.0.0.1:9",
        RECEIVER_GBG_TOKEN_URL="http://127.0.0.1:9/token",
        RECEIVER_GBG_CLIENT_ID="sim-client",
        RECEIVER_GBG_CLIENT_SECRET="sim-secret",
        RECEIVER_WORKER_STALE_AFTER="2",
        RUNTIME_DIRECTORY=str(runtime),
        RECEIVER_WORKER_METRICS_BIND=scrape,
    )
    assert run(["migrate"], env).returncode == 0
    _, base = start_web(env, tmp_path / "web.log", procs)
    worker = Proc(["poller"], env, tmp_path / "poller.log")
    procs.append(worker)
    deadline = time.monotonic() + 20
    while not (ready := call("GET", f"{base}/readyz"))[1]["workers"]:
        assert time.monotonic() < deadline, worker.log.read_text()
        time.sleep(0.1)
    assert ready[0] == 200
    [seen] = ready[1]["workers"]
    assert seen["state"] == "running"
    assert seen["worker"].split(":")[1] == str(worker.popen.pid)
    assert (runtime / "gbg-receiver-worker.heartbeat").exists()
    # The worker's own scrape, for a host without a web: the same figures.
    with urllib.request.urlopen(f"http://{scrape}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    assert "\ngbg_receiver_store_up 1.0\n" in text
    assert "gbg_receiver_worker_heartbeat_age_seconds " in text
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(f"http://{scrape}/other", timeout=10)

    assert worker.stop() == 0
    [seen] = call("GET", f"{base}/readyz")[1]["workers"]
    assert seen["state"] == "stopped"
    time.sleep(2.5)
    status, body = call("GET", f"{base}/readyz")
    assert status == 503
    assert body["detail"].startswith("no worker seen for ")
