"""Why a poll fails: each instance keeps its last error, shown by the API, the CLI, the
dashboard and the overview; giving up says why in one warning."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from receiver import usecases
from receiver.domain.model import Decision, FetchFailed, Instance
from receiver.fetching import FetchResult
from receiver.services import Services
from receiver.testing.simulator import Simulator
from receiver.web import create_app
from tests.conftest import API_TOKEN, FakeClock, with_settings
from tests.processes import gbg_env, run
from tests.test_dashboard import page, sign_in
from tests.test_poller import poll_until_due, webhook
from tests.test_webhook import basic

BEARER = {"Authorization": f"Bearer {API_TOKEN}"}


def test_the_last_poll_error_is_kept_shown_and_said_on_giving_up(
    services: Services, sim: Simulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with_settings(services, poll_max_errors=3)
    client = create_app(services=services).test_client()
    webhook(services, "lost-1")  # GBG does not know it: every fetch answers 404
    lefts = []
    for _ in range(3):
        poll_until_due(services, clock, "lost-1")
        shown = client.get("/api/v1/instances/lost-1", headers=BEARER).get_json()
        error = shown["lastError"]
        assert (error["kind"], error["httpStatus"]) == ("http_404", 404)
        assert error["message"].endswith(": 404")  # the client's words, not only the kind
        assert error["at"].endswith("Z")
        lefts.append(error["errorsLeft"])
    assert lefts == [2, 1, 0]
    assert shown["pollingGaveUp"] is True
    [gave_up] = [r for r in caplog.records if r.getMessage() == "poll.gave_up"]
    assert gave_up.levelname == "WARNING"
    assert (gave_up.instance_id, gave_up.last_error, gave_up.http_status) == (  # type: ignore[attr-defined]
        "lost-1",
        "http_404",
        404,
    )
    assert (gave_up.poll_errors, gave_up.error_message) == (3, error["message"])  # type: ignore[attr-defined]
    fetched = [vars(r) for r in caplog.records if r.getMessage() == "poll.fetched"]
    shown_fields = ("instance_id", "outcome", "status", "poll_errors")
    assert [tuple(f[k] for k in shown_fields) for f in fetched] == [
        ("lost-1", "http_404", "in_progress", n) for n in (1, 2, 3)
    ]
    for line in fetched:  # how long GBG took, in ms, and when the fetch began
        assert isinstance(line["duration_ms"], float)
        assert line["started_at"] == pytest.approx(clock(), abs=60)  # the fake clock's time

    sign_in(client)
    listed = page(client, "/dashboard/instances")
    assert "GBG answers 404, 3 errors</td>" in listed
    shown_page = page(client, "/dashboard/instances/lost-1")
    assert "GBG answers 404 (" in shown_page
    overview = page(client, "/dashboard/")
    assert "1 unfinished instance: GBG answers 404 (their last poll error)" in overview

    sim.set_status("lost-1", "Completed", "Of Age")  # GBG knows it now
    polled = client.post("/api/v1/instances/lost-1/poll", headers=BEARER).get_json()
    assert (polled["status"], polled["lastError"]) == ("completed", None)
    assert "unfinished instance" not in page(client, "/dashboard/")


def test_show_prints_the_last_error(tmp_path: Path, sim: Simulator) -> None:
    env = gbg_env(tmp_path, sim.base_url)
    run(["migrate"], env)
    run(["register", "nobody-1"], env)
    polled = run(["poll", "nobody-1"], env)
    assert polled.returncode == 0, polled.stderr
    shown = json.loads(run(["show", "nobody-1"], env).stdout)
    assert shown["lastError"]["kind"] == "http_404"
    assert shown["lastError"]["errorsLeft"] == 29


def test_one_timeline_holds_everything_that_happened_in_order(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    from receiver.testing.simulator import Fault
    from tests.appserver import App, running
    from tests.test_forwarding import forwarding, send

    with running(App(script={"t-1": [500]})) as app:
        forwarder = forwarding(services, app)
        client = create_app(services=services).test_client()
        usecases.register(services, "t-1", "order-7")
        clock.advance(1)
        hooked = client.post("/webhooks/gbg", json={"instanceId": "t-1"}, headers=basic())
        assert hooked.status_code == 202
        assert usecases.fold_inbox(services) == 1
        sim.set_status("t-1", "Completed", "Of Age")
        sim.add_fault(Fault("404", instance_id="t-1"))
        poll_until_due(services, clock, "t-1")  # 404: the instance's error
        poll_until_due(services, clock, "t-1")  # GBG says Completed
        assert send(forwarder) == ["http_500"]
        clock.advance(5)
        assert send(forwarder) == ["delivered"]
        forwarder.close()
        answer = client.get("/api/v1/instances/t-1/timeline", headers=BEARER).get_json()
    timeline = answer["timeline"]
    assert [(t["kind"], t.get("outcome")) for t in timeline] == [
        ("registered", None),
        ("webhook", None),
        ("fetch", "http_404"),
        ("fetch", "ok"),
        ("status", None),
        ("forward", "http_500"),
        ("forward", "delivered"),
    ]
    assert timeline[3]["gbgStatus"] in ("Completed", "COMPLETED")
    assert timeline[3]["seconds"] is not None
    status = timeline[4]
    assert (status["from"], status["to"], status["source"]) == (
        "in_progress",
        "completed",
        "webhook",
    )
    assert status["decidedBy"] == "a state fetch that a webhook prompted"
    assert timeline[5]["messageId"] == timeline[6]["messageId"]
    assert [t["at"] for t in timeline] == sorted(t["at"] for t in timeline)
    assert client.get("/api/v1/instances/nope/timeline", headers=BEARER).status_code == 404


def test_a_fetch_line_gives_its_duration_in_ms_to_a_tenth_and_its_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    failed = FetchFailed("f-1", "http_500", started_at=1234.56789)
    FetchResult(failed, 0.01234).log(Decision(Instance("f-1", 0.0, 0.0), None, False))
    [line] = [vars(r) for r in caplog.records if r.getMessage() == "poll.fetched"]
    assert (line["duration_ms"], line["started_at"]) == (12.3, 1234.5679)
