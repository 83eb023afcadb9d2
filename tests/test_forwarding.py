"""Status changes reach the application: signed, in order per instance, at least once.

The worker's own forwarder against a real local endpoint that verifies every message
with the standardwebhooks library; the service's clock is the test's.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from receiver import notify, usecases
from receiver.domain.model import TtlPassed
from receiver.services import Services
from receiver.testing.simulator import Simulator
from receiver.web import create_app
from receiver.workers.forwarder import Forwarder
from tests.appserver import SECRET, App, running
from tests.conftest import API_TOKEN, FakeClock, with_settings
from tests.test_poller import poll_once, webhook

BEARER = {"Authorization": f"Bearer {API_TOKEN}"}
FAILED = 'gbg_receiver_forward_attempts_total{outcome="failed"}'
LATENCY = "gbg_receiver_forward_latency_seconds"


OPENAPI = Path(__file__).resolve().parents[1] / "receiver" / "web" / "openapi.json"
DOCUMENT = Registry().with_resource(
    "urn:doc",
    Resource.from_contents(json.loads(OPENAPI.read_text()), default_specification=DRAFT202012),
)


def sample(text: str, name: str) -> float:
    """A sample's value in Prometheus text (0 before its first increment)."""
    found = re.search(re.escape(name) + r" (\S+)", text)
    return float(found.group(1)) if found else 0.0


def forwarding_on(services: Services, url: str = "https://app.example/hooks") -> Services:
    """The services with forwarding to ``url`` on, signed with the test secret."""
    return with_settings(services, forward_url=url, forward_secret=SECRET)


def forwarding(services: Services, app: App) -> Forwarder:
    forwarding_on(services, app.url)
    return Forwarder(services)


def send(forwarder: Forwarder) -> list[str | None]:
    forwarder.drain()
    return forwarder.wait()


def complete(services: Services, sim: Simulator, clock: FakeClock, instance_id: str) -> None:
    sim.set_status(instance_id, "Completed", "Of Age")
    webhook(services, instance_id)
    clock.advance(1)
    poll_once(services)


def test_a_journey_yields_its_message_signed_and_without_personal_data(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    with running(App()) as app:
        forwarder = forwarding(services, app)
        usecases.register(services, "j-1", "order-42")
        complete(services, sim, clock, "j-1")
        assert send(forwarder) == ["delivered"]
        [message] = app.delivered()
        assert app.unverified == 0
        assert message.body["type"] == "journey.completed"
        data = message.body["data"]
        assert message.webhook_id == f"msg_gbgr_{data['seq']}"
        assert data["previousStatus"] == "in_progress"
        instance = data["instance"]
        assert (instance["instanceId"], instance["status"], instance["outcome"]) == (
            "j-1",
            "completed",
            "Of Age",
        )
        assert instance["reference"] == "order-42"  # the application's own key
        assert "Simona" not in str(message.body)  # the simulator's person stays out
        # What the document's webhooks entry promises the receiving side, exactly.
        notification = {"$ref": "urn:doc#/components/schemas/Notification"}
        Draft202012Validator(
            notification, registry=DOCUMENT, format_checker=Draft202012Validator.FORMAT_CHECKER
        ).validate(message.body)
        assert send(forwarder) == []  # delivered once: nothing more to send
        forwarder.close()


def test_one_instance_in_order_others_unhindered_retries_spaced(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    with running(App(script={"slow-1": [500, 503]}, retry_after="900")) as app:
        forwarder = forwarding(services, app)
        usecases.register(services, "slow-1", None)
        clock.advance(services.settings.instance_ttl + 1)
        usecases.observe(services, TtlPassed("slow-1"), clock())  # seq 1: expired
        complete(services, sim, clock, "slow-1")  # seq 2: completed, behind seq 1
        complete(services, sim, clock, "other-1")  # seq 3: another instance
        first, second, other = (m.seq for m in services.store.messages(status=None, limit=9))
        assert sorted(map(str, send(forwarder))) == ["delivered", "http_500"]
        assert [r.body["data"]["seq"] for r in app.delivered()] == [other]  # not held up
        times = [clock()]
        for wait, outcome in ((5, "http_503"), (900, "delivered")):
            clock.advance(wait - 1)
            assert send(forwarder) == []  # not before its time
            clock.advance(1)
            assert send(forwarder) == [outcome]
            times.append(clock())
        # 5 s, then the receiver's Retry-After (900 s, more than the schedule's 5 min):
        # each wait measured on the service's clock.
        assert [b - a for a, b in itertools.pairwise(times)] == [5, 900]
        assert send(forwarder) == ["delivered"]  # seq 2 only now: after seq 1
        order = [r.body["data"]["seq"] for r in app.delivered()]
        assert order == [other, first, second]
        tries = [r.webhook_id for r in app.received if r.body["data"]["seq"] == first]
        assert tries == [f"msg_gbgr_{first}"] * 3  # one id across every attempt
        forwarder.close()


def test_a_message_that_used_up_its_attempts_is_kept_and_replayable(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    with running(App(script={"f-1": [500] * 8})) as app:
        forwarder = forwarding(services, app)
        client = create_app(services=services).test_client()
        failed_before = sample(client.get("/metrics").get_data(as_text=True), FAILED)
        complete(services, sim, clock, "f-1")
        outcomes = []
        for _ in range(8):
            outcomes += send(forwarder)
            clock.advance(36001)
        assert outcomes == ["http_500"] * 7 + ["failed"]
        failed = client.get("/api/v1/outbox?status=failed", headers=BEARER).get_json()
        [message] = failed["messages"]
        assert (message["attempts"], message["lastError"]) == (8, "http_500")
        replayed = client.post(f"/api/v1/outbox/{message['id']}/replay", headers=BEARER)
        assert replayed.get_json()["status"] == "pending"
        assert send(forwarder) == ["delivered"]
        assert client.get("/api/v1/outbox?status=failed", headers=BEARER).get_json() == {
            "messages": [],
            "nextAfter": 0,
        }
        assert client.post("/api/v1/outbox/0/replay", headers=BEARER).status_code == 404
        text = client.get("/metrics").get_data(as_text=True)
        assert sample(text, FAILED) == failed_before + 1
        assert "gbg_receiver_outbox_depth 0.0" in text
        forwarder.close()


def test_each_attempt_says_what_came_of_it_in_one_line(
    services: Services, sim: Simulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """forward.attempted (what an operator greps for), forward.replayed and the headers
    the application sees: named and valued exactly."""
    caplog.set_level(logging.INFO)
    client = create_app(services=services).test_client()

    def latency() -> tuple[float, float]:
        text = client.get("/metrics").get_data(as_text=True)
        return sample(text, LATENCY + "_count"), sample(text, LATENCY + "_sum")

    with running(App(script={"l-1": [503]}, retry_after="60")) as app:
        forwarder = forwarding(services, app)
        complete(services, sim, clock, "l-1")
        count, total = latency()
        assert send(forwarder) == ["http_503"]
        assert latency() == (count, total)  # only a delivery has a latency
        clock.advance(61)
        assert send(forwarder) == ["delivered"]
        assert latency() == (count + 1, total + 61)  # from the status change
        complete(services, sim, clock, "l-2")
        assert send(forwarder) == ["delivered"]
        assert latency() == (count + 2, total + 61)  # delivered at once: 0 s
        first, second, _ = app.received
        seq = first.body["data"]["seq"]
        for received in (first, second):
            assert received.headers["Content-Type"] == "application/json"
            assert received.headers["User-Agent"] == "gbg-receiver"
            assert received.webhook_id == f"msg_gbgr_{seq}"
        lines = [
            vars(r)
            for r in caplog.records
            if r.getMessage() == "forward.attempted" and vars(r)["instance_id"] == "l-1"
        ]
        shown = ("seq", "instance_id", "attempt", "outcome", "error", "next_attempt_in_s")
        said = [{k: line[k] for k in (*shown, "lease_kept")} for line in lines]
        assert said == [
            dict(zip(shown, (seq, "l-1", 1, "http_503", "http_503", 60.0), strict=True))
            | {"lease_kept": True},
            dict(zip(shown, (seq, "l-1", 2, "delivered", None, None), strict=True))
            | {"lease_kept": True},
        ]
        forwarder.close()


def test_a_replay_and_a_bug_in_an_attempt_are_logged_with_their_message(
    services: Services, sim: Simulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with running(App(script={"r-1": [500] * 8})) as app:
        forwarder = forwarding(services, app)
        complete(services, sim, clock, "r-1")
        for _ in range(8):
            send(forwarder)
            clock.advance(36001)
        [message] = services.store.messages(status="failed", limit=5)
        assert notify.replay(services, message.seq) is not None
        [replayed] = [vars(r) for r in caplog.records if r.getMessage() == "forward.replayed"]
        assert (replayed["seq"], replayed["instance_id"]) == (message.seq, "r-1")

        def broken(*_: object) -> str:
            raise RuntimeError("a bug")

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(notify, "attempt", broken)
            assert send(forwarder) == [None]  # the lease lapses; another attempt follows
        [failed] = [r for r in caplog.records if r.getMessage() == "forward.failed"]
        assert (vars(failed)["seq"], failed.levelname) == (message.seq, "ERROR")
        assert failed.exc_info is not None
        forwarder.close()


def test_without_a_forward_url_no_message_is_written(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    complete(services, sim, clock, "n-1")
    assert services.store.messages(status=None, limit=10) == []


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"RECEIVER_FORWARD_URL": "https://app.example/hooks"}, "RECEIVER_FORWARD_SECRET"),
        ({"RECEIVER_FORWARD_SECRET": SECRET}, "RECEIVER_FORWARD_URL"),
        (
            {"RECEIVER_FORWARD_URL": "http://app.example/hooks", "RECEIVER_FORWARD_SECRET": SECRET},
            "RECEIVER_FORWARD_URL",
        ),
        (
            {
                "RECEIVER_FORWARD_URL": "https://app.example",
                "RECEIVER_FORWARD_SECRET": "whsec_YWJj",
            },
            "RECEIVER_FORWARD_SECRET",
        ),
        (
            {"RECEIVER_FORWARD_URL": "https://app.example", "RECEIVER_FORWARD_SECRET": "x" * 40},
            "RECEIVER_FORWARD_SECRET",
        ),
    ],
)
def test_bad_forwarding_configuration_refuses_to_start(env: dict[str, str], named: str) -> None:
    from receiver.config import Settings
    from receiver.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env)
    assert [p.split(":")[0] for p in refused.value.problems] == [named]
