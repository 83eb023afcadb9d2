"""Why a poll fails: each instance keeps its last error, shown by the API, the CLI, the
dashboard and the overview; giving up says why in one warning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from receiver.services import Services
from receiver.testing.simulator import Simulator
from receiver.web import create_app
from tests.conftest import API_TOKEN, FakeClock, with_settings
from tests.processes import gbg_env, run
from tests.test_dashboard import page, sign_in
from tests.test_poller import poll_until_due, webhook

BEARER = {"Authorization": f"Bearer {API_TOKEN}"}


def test_the_last_poll_error_is_kept_shown_and_said_on_giving_up(
    services: Services, sim: Simulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with_settings(services, poll_max_errors=3)
    client = create_app(services=services).test_client()
    webhook(services, "lost-1")  # GBG does not know it: every fetch answers 404
    lefts = []
    for _ in range(3):
        poll_until_due(services, clock, "lost-1")
        shown = client.get("/api/v1/instances/lost-1", headers=BEARER).get_json()
        error = shown["lastError"]
        assert (error["kind"], error["httpStatus"]) == ("http_404", 404)
        assert "404" in error["message"]
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
