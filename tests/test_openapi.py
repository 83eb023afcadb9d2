"""The OpenAPI 3.1 document: it covers every route, and schemathesis finds no failure
against the app served by gunicorn."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from receiver import usecases
from receiver.domain.model import COMPLETED, Fetched, GbgState, Registered
from receiver.domain.schedule import Policy
from receiver.store import Delivery, Store
from receiver.web.exchange import WEBHOOK_PATH
from tests.conftest import API_TOKEN, WEBHOOK_PASS, WEBHOOK_USER
from tests.processes import Proc, base_env, run, start_web

DOCUMENT = Path(__file__).resolve().parents[1] / "receiver" / "web" / "openapi.json"

# Why two operations skip schemathesis's positive_data_acceptance check: a schema cannot
# say "an instance id in one of six places" (the webhook), nor "a cursor this server
# made" (opaque cursors); both are refused with a 4xx problem by design. A poll or a
# journey start while GBG is down answers its documented 503 with Retry-After, which the
# server-error check cannot tell from a crash; the web log is checked for errors below.
# DELETE erases an instance's personal data and keeps the instance (its status stays
# readable, as the contract says), which the use-after-free check takes for a bug.
CONFIG = """
[auth.openapi.webhookBasic]
username = "{user}"
password = "{password}"

[auth.openapi.bearer]
bearer = "{token}"

# A schema-valid webhook for an unknown id is a 202 and a valid listing may still be a
# 400 for a cursor this service did not give (both documented): not acceptance failures.
[[operations]]
include-operation-id = ["receiveWebhook", "listInstances"]
checks.positive_data_acceptance.enabled = false

# GBG is not configured in this run: their documented 502/503 problems are the answer.
[[operations]]
include-operation-id = ["pollInstance", "startJourney"]
checks.not_a_server_error.enabled = false

# An erase keeps the instance (the document says so): reads after it are 200, by design.
[checks.use_after_free]
enabled = false

[[operations]]
include-operation-id = ["replayOutboxMessage"]
parameters = {{ messageId = {message} }}

[[operations]]
include-operation-id = ["refoldDelivery"]
parameters = {{ deliveryId = {delivery} }}
"""


PARAMS = {
    "instance_id": "instanceId",
    "message_id": "messageId",
    "delivery_id": "deliveryId",
    "kind": "kind",
}


def test_every_route_is_documented(app) -> None:  # type: ignore[no-untyped-def]
    documented = {
        (path, method.upper())
        for path, item in json.loads(DOCUMENT.read_text())["paths"].items()
        for method in item
    }
    served = {
        (re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "{" + PARAMS[m.group(1)] + "}", rule.rule), method)
        for rule in app.url_map.iter_rules()
        # The dashboard's HTML pages are for people (docs/dashboard.md), not in the API's document.
        if rule.endpoint != "static" and not rule.endpoint.startswith("dashboard.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    served.add((WEBHOOK_PATH, "POST"))  # in front of Flask (receiver.web.webhook)
    assert served == documented


def test_the_document_is_served(client) -> None:  # type: ignore[no-untyped-def]
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    assert answer.get_json() == json.loads(DOCUMENT.read_text())
    assert answer.get_json()["openapi"] == "3.1.0"


@pytest.mark.live
def test_schemathesis_finds_no_failure(tmp_path: Path, procs: list[Proc]) -> None:
    env = base_env(
        tmp_path,
        RECEIVER_GBG_CLIENT_ID="c",
        RECEIVER_GBG_CLIENT_SECRET="s",
        RECEIVER_GBG_BASE_URL="http://127.0.0.1:9",
        RECEIVER_GBG_TOKEN_URL="http://127.0.0.1:9/token",  # GBG down: polls must still answer
    )
    assert run(["migrate"], env).returncode == 0
    store = Store.from_url(env["RECEIVER_DATABASE_URL"])  # one message in the outbox to replay
    done = (Fetched("st-1", GbgState(COMPLETED, "Completed")), time.time())
    usecases.fold(store, Policy(), [(Registered("st-1"), time.time()), done], forward=True)
    [message] = store.messages(status=None, limit=1)
    store.append_delivery(Delivery("st-2", time.time(), b"{}", {}, None, None))
    [aside] = store.waiting_deliveries(1)  # and a delivery set aside, to fold again
    for _ in range(usecases.FOLD_TRIES):
        store.fold_failed(aside, "RuntimeError: a bug", time.time(), usecases.FOLD_TRIES)
    store.engine.dispose()
    web, base = start_web(env, tmp_path / "web.log", procs)
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        CONFIG.format(
            user=WEBHOOK_USER,
            password=WEBHOOK_PASS,
            token=API_TOKEN,
            message=message.seq,
            delivery=aside,
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config),
            "run",
            f"{base}/openapi.json",
            "--max-examples",
            "60",
            "--no-color",
            "--seed",
            "1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert "No issues found" in result.stdout, result.stdout[-3000:]
    assert '"level": "error"' not in web.log.read_text()
