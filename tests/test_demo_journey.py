"""The README's walk, as a newcomer runs it: start a journey through the API, open its
instanceUrl, end it there, and read the decision in the API, the CLI and the dashboard."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from receiver.testing.simulator import Simulator
from tests.processes import API, Proc, call, run, start_serve

pytestmark = pytest.mark.live


def open_page(url: str, form: dict[str, str] | None = None) -> tuple[int, str]:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    try:
        with urllib.request.urlopen(url, data=data, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize(
    ("ending", "status", "outcome"),
    [("passed", "completed", "Of Age"), ("failed", "failed", "Not Of Age")],
)
def test_a_journey_started_through_the_api_is_ended_by_the_person_and_decided(
    tmp_path: Path, procs: list[Proc], ending: str, status: str, outcome: str
) -> None:
    base, sim, serve = start_serve(tmp_path, procs)
    code, started = call(
        "POST",
        f"{base}/api/v1/journeys",
        {"resourceId": "age-check@latest", "reference": "order-41"},
        API,
    )
    assert code == 201
    instance_id, url = started["instanceId"], started["instanceUrl"]
    assert url == f"{sim}/journey/{instance_id}"
    shown, page = open_page(url)
    assert shown == 200
    assert 'value="passed"' in page
    assert 'value="failed"' in page
    ended, page = open_page(url, {"ending": ending})
    assert ended == 200
    assert "the webhook is on its way" in page
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        _, decided = call("GET", f"{base}/api/v1/instances/{instance_id}", headers=API)
        if decided["status"] != "in_progress":
            break
        time.sleep(0.2)
    assert (decided["status"], decided["outcome"], decided["source"]) == (
        status,
        outcome,
        "webhook",
    )
    assert decided["reference"] == "order-41"
    assert decided["webhookReceivedAt"] is not None  # the module posted, early
    env = dict(serve.env)
    shown_cli = json.loads(run(["show", instance_id], env).stdout)
    assert (shown_cli["status"], shown_cli["outcome"]) == (status, outcome)
    assert serve.stop() == 0


def test_leaving_the_journey_ends_nothing(tmp_path: Path, procs: list[Proc]) -> None:
    base, sim, _ = start_serve(tmp_path, procs)
    _, started = call("POST", f"{base}/api/v1/journeys", {"resourceId": "age-check@latest"}, API)
    _, page = open_page(started["instanceUrl"], {"ending": "abandoned"})
    assert "The journey stays in progress" in page
    _, webhooks = call("GET", f"{sim}/_sim/webhooks")
    assert webhooks["webhooks"] == []
    assert open_page(f"{sim}/journey/nobody")[0] == 404
    assert open_page(started["instanceUrl"], {"ending": "teleported"})[0] == 400


def test_the_hosted_page_of_the_in_process_simulator(sim: Simulator) -> None:
    instance_id = sim.create()
    shown, page = open_page(f"{sim.base_url}/journey/{instance_id}")
    assert shown == 200
    assert "InProgress" in page
