"""Metrics under several gunicorn workers, and logs that never carry secrets or identity."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import API_TOKEN, WEBHOOK_PASS
from tests.processes import API, HOOK, Proc, base_env, call, run, start_serve, start_web

pytestmark = pytest.mark.live


def scrape(base: str) -> dict[str, float]:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        name: float(value) for name, value in re.findall(r"^(gbg_receiver_\S+) (\S+)$", text, re.M)
    }


def test_metrics_add_up_across_two_workers(tmp_path: Path, procs: list[Proc]) -> None:
    env = base_env(tmp_path, RECEIVER_WEB_WORKERS="2")
    assert run(["migrate"], env).returncode == 0
    web, base = start_web(env, tmp_path / "web.log", procs)
    sent, pids = 0, set()
    # A new connection each: gunicorn spreads them over the workers once both are up
    # (the second may still be starting when the first answers /readyz).
    while len(pids) < 2 or sent < 40:
        assert sent < 2000, "both workers should have taken webhooks"
        assert call("POST", f"{base}/webhooks/gbg", {"instanceId": f"m-{sent}"}, HOOK)[0] == 202
        sent += 1
        pids = {
            json.loads(line)["pid"]
            for line in web.log.read_text().splitlines()
            if '"webhook.accepted"' in line
        }
    for _ in range(3):
        call("POST", f"{base}/webhooks/gbg", {"status": "x"}, HOOK)  # 422
    for _ in range(3):  # whichever worker answers the scrape, the totals are the same
        seen = scrape(base)
        assert seen['gbg_receiver_webhooks_total{outcome="accepted"}'] == sent
        assert seen['gbg_receiver_webhooks_total{outcome="unprocessable"}'] == 3
        key = (
            'gbg_receiver_http_request_seconds_count{endpoint="/webhooks/gbg",'
            'method="POST",status="202"}'
        )
        assert seen[key] == sent
        # No worker runs here: the inbox holds them all, acknowledged, waiting to fold.
        assert seen["gbg_receiver_inbox_depth"] == sent
        assert seen["gbg_receiver_inbox_oldest_age_seconds"] > 0
    assert web.stop() == 0
    # One line per request: an accepted webhook's own event stands in for the access line.
    lines = [json.loads(x) for x in web.log.read_text().splitlines() if x.startswith("{")]
    accepted = [x for x in lines if x["event"] == "webhook.accepted"]
    access = [x for x in lines if x["event"] == "http.access"]
    assert len(accepted) == sent
    assert all(x["status"] == 202 and len(x["request_id"]) == 32 for x in accepted)
    hooks = [x["status"] for x in access if x["path"] == "/webhooks/gbg"]
    assert hooks == [422, 422, 422]
    assert [x["status"] for x in access if x["path"] == "/metrics"] == [200, 200, 200]


def test_no_secret_or_identity_data_in_any_log_line(tmp_path: Path, procs: list[Proc]) -> None:
    base, sim, serve = start_serve(
        tmp_path,
        procs,
        RECEIVER_WEBHOOK_TIMEOUT="1",
        RECEIVER_CONFIRM_DELAY="0.2",
        RECEIVER_STORE_PII="true",
        RECEIVER_LOG_FORMAT="json",
    )
    client_secret = "sim-secret"  # the one tests.processes.gbg_env configures

    ids = []
    for spec in (
        {"endsIn": 0.3},
        {"endsIn": 0, "webhook": "duplicate"},
        {"endsIn": 0.2, "webhook": "drop", "status": "Failed"},
    ):
        ids.append(call("POST", f"{sim}/_sim/journeys", spec)[1]["instanceId"])
    call("POST", f"{base}/api/v1/instances", {"instanceId": ids[2], "reference": "r-1"}, API)
    call("POST", f"{sim}/_sim/faults", {"kind": "429", "retryAfter": 1})
    call("POST", f"{sim}/_sim/tokens/expire")
    call(
        "POST",
        f"{base}/webhooks/gbg",
        {"instanceId": "x-1"},
        {"Authorization": "Basic " + "Z2JnLWhvb2s6d3Jvbmc="},
    )  # wrong password
    call("GET", f"{base}/api/v1/instances", headers={"Authorization": "Bearer " + API_TOKEN[:-1]})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = [call("GET", f"{base}/api/v1/instances/{i}", headers=API)[1] for i in ids]
        if all(s and s["status"] != "in_progress" for s in states):
            break
        time.sleep(0.3)
    call("POST", f"{base}/api/v1/instances/{ids[0]}/poll", headers=API)
    assert serve.stop() == 0
    log = serve.log.read_text()
    lines = log.splitlines()
    assert len(lines) > 30
    assert [s["status"] for s in states] == ["completed", "completed", "failed"]
    forbidden = {
        "webhook password": WEBHOOK_PASS,
        "API token": API_TOKEN,
        "GBG client secret": client_secret,
        "bearer header": "Bearer ",
        "first name": "Simona",
        "last name": "Testperson-7f3a",
        "birth date": "1990-02-03",
    }
    hits = {what: sum(value in line for line in lines) for what, value in forbidden.items()}
    assert hits == dict.fromkeys(forbidden, 0)


COUNT_AND_EXIT = """
import sys
from receiver import metrics
m = metrics.start(sys.argv[1])
m.webhooks.labels("accepted").inc(int(sys.argv[2]))
"""
SUM = """
import sys
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from receiver import metrics
metrics.start(sys.argv[1])  # a new worker starting after the others died
registry = CollectorRegistry()
MultiProcessCollector(registry, path=sys.argv[1])
print(generate_latest(registry).decode())
"""


def test_counters_never_go_backwards_when_a_worker_dies(tmp_path: Path) -> None:
    """Processes that are gone stay counted, folded into one archive file per kind, so
    the directory does not gain files with every restart."""
    directory = str(tmp_path / "metrics")
    total = 0
    for count in (3, 4, 5, 6):  # workers count, then exit (as a worker killed by gunicorn)
        done = subprocess.run(
            [sys.executable, "-c", COUNT_AND_EXIT, directory, str(count)], check=False
        )
        assert done.returncode == 0
        total += count
        text = subprocess.run(
            [sys.executable, "-c", SUM, directory], capture_output=True, text=True, check=True
        ).stdout
        assert f'gbg_receiver_webhooks_total{{outcome="accepted"}} {total}.0' in text
    # Eight processes came and went: the archive, and the last one's own (folded when the
    # next one starts).
    counters = sorted(p.name.split("-")[-1] for p in (tmp_path / "metrics").glob("counter_*"))
    assert len(counters) == 2
    assert "archive.db" in counters
