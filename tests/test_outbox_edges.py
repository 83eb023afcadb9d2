"""The outbox at its edges: a trickling application, leases, what counts as delivered,
the application's Retry-After, and the order of one instance's messages."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from receiver import usecases
from receiver.domain.model import TtlPassed
from receiver.downstream import MAX_ANSWER, Downstream
from receiver.services import Services
from receiver.testing.simulator import Simulator
from receiver.web import create_app
from receiver.workers.forwarder import Forwarder
from tests.appserver import SECRET, App, running
from tests.conftest import API_TOKEN, FakeClock, with_settings
from tests.test_dashboard import page, post, sign_in
from tests.test_forwarding import complete, forwarding, forwarding_on, send

BEARER = {"Authorization": f"Bearer {API_TOKEN}"}

DEADLINE = (0.5, 1.0)  # connect, read: every attempt ends within 1.5 s


def test_a_trickling_answer_is_cut_at_its_deadline_and_others_keep_flowing(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    with running(App(trickle={"slow-1"})) as app:
        forwarding_on(services, app.url)
        first, second = (
            Forwarder(services, downstream=Downstream(app.url, SECRET, timeout=DEADLINE))
            for _ in range(2)
        )
        for instance_id in ("slow-1", "fast-1", "fast-2", "fast-3"):
            complete(services, sim, clock, instance_id)
        started = time.monotonic()
        assert first.drain() == 4
        while second.drain():  # a second worker at the same time: nothing to take
            raise AssertionError("a message on its way was claimed again")
        outcomes = first.wait()
        assert time.monotonic() - started < sum(DEADLINE) + 1
        assert sorted(map(str, outcomes)) == ["delivered"] * 3 + ["timeout"]
        delivered = {r.body["data"]["instance"]["instanceId"] for r in app.delivered()}
        assert delivered == {"fast-1", "fast-2", "fast-3"}
        assert app.overlaps == 0
        [slow] = services.store.messages(status="pending", limit=9)
        assert (slow.instance_id, slow.last_error, slow.attempts) == ("slow-1", "timeout", 1)
        for forwarder in (first, second):
            forwarder.close()


def test_a_lease_outlives_any_attempt(services: Services) -> None:
    forwarding_on(services)
    with_settings(services, poll_lease=5.0)
    slow = Downstream("https://app.example/hooks", SECRET, timeout=(3.05, 10.0))
    forwarder = Forwarder(services, downstream=slow)
    assert forwarder.lease > sum(slow.timeout)
    forwarder.close()


def test_a_worker_that_lost_its_lease_cannot_record_over_the_new_owner(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    forwarding_on(services)
    complete(services, sim, clock, "l-1")
    store = services.store
    [mine] = store.claim_messages("old", clock(), 10, 30)
    clock.advance(31)
    [theirs] = store.claim_messages("new", clock(), 10, 30)
    assert theirs.seq == mine.seq
    assert not store.record_attempt(mine.seq, "old", now=clock(), error=None, next_attempt_at=None)
    assert store.messages(status="pending", limit=9)[0].seq == mine.seq  # not delivered
    assert store.record_attempt(mine.seq, "new", now=clock(), error=None, next_attempt_at=None)
    assert store.messages(status="delivered", limit=9)[0].seq == mine.seq


def test_only_a_2xx_is_delivered_a_redirect_is_not(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    with running(App(script={"r-1": [300, 301, 307, 304, 200]})) as app:
        forwarder = forwarding(services, app)
        complete(services, sim, clock, "r-1")
        outcomes = []
        for _ in range(5):
            outcomes += send(forwarder)
            clock.advance(86400)
        assert outcomes == ["http_300", "http_301", "http_307", "http_304", "delivered"]
        forwarder.close()


def test_the_applications_retry_after_may_lengthen_a_delay_never_shorten_it(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    with running(App(script={"ra-1": [503, 503, 503]}, retry_after="0")) as app:
        forwarder = forwarding(services, app)
        complete(services, sim, clock, "ra-1")
        assert send(forwarder) == ["http_503"]
        [message] = services.store.messages(status="pending", limit=9)
        assert message.next_attempt_at == clock() + 5  # the schedule's, not Retry-After's 0
        clock.advance(4.9)
        assert send(forwarder) == []
        clock.advance(0.1)
        assert send(forwarder) == ["http_503"]
        [message] = services.store.messages(status="pending", limit=9)
        assert message.next_attempt_at == clock() + 300
        forwarder.close()


def test_never_an_older_status_after_a_newer_one(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    with running(App(script={"o-1": [500] * 8})) as app:
        forwarder = forwarding(services, app)
        client = create_app(services=services).test_client()
        usecases.register(services, "o-1", None)
        clock.advance(services.settings.instance_ttl + 1)
        usecases.observe(services, TtlPassed("o-1"), clock())  # seq 1: expired
        complete(services, sim, clock, "o-1")  # seq 2: completed, waits behind seq 1
        older, newer = (m.seq for m in services.store.messages(status=None, limit=9))
        outcomes = []
        for _ in range(9):
            outcomes += send(forwarder)
            clock.advance(36001)
        assert outcomes == ["http_500"] * 7 + [
            "failed",
            "delivered",
        ]  # seq 2 goes once seq 1 gave up
        assert [r.body["data"]["seq"] for r in app.delivered()] == [newer]
        assert {m.seq: m.status for m in services.store.messages(status=None, limit=9)} == {
            older: "superseded",
            newer: "delivered",
        }
        refused = client.post(f"/api/v1/outbox/{older}/replay", headers=BEARER)
        assert refused.status_code == 409
        assert refused.mimetype == "application/problem+json"
        assert refused.get_json()["detail"] == (
            f"message {older}: message {newer}, a later status of its instance, was delivered"
        )
        assert send(forwarder) == []  # nothing older goes out after the newer one
        assert [r.body["data"]["seq"] for r in app.delivered()] == [newer]
        # The newer one sent again (pending, not yet taken): the older stays superseded.
        again = client.post(f"/api/v1/outbox/{newer}/replay", headers=BEARER).get_json()
        assert (again["status"], again["attempts"], again["deliveredAt"]) == ("pending", 0, None)
        still = client.post(f"/api/v1/outbox/{older}/replay", headers=BEARER)
        assert (still.status_code, still.get_json()["detail"]) == (
            409,
            f"message {older}: a later status of its instance was delivered",
        )
        sign_in(client)  # the dashboard says so, on the instance's page
        answer = post(client, f"/dashboard/outbox/{older}/replay", "/dashboard/instances/o-1")
        assert (answer.status_code, answer.headers["Location"]) == (303, "/dashboard/instances/o-1")
        assert "Not replayed: message" in page(client, "/dashboard/instances/o-1")
        forwarder.close()


def test_a_delivered_message_is_not_replayed_after_a_later_one(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    forwarding_on(services)
    usecases.register(services, "d-1", None)
    clock.advance(services.settings.instance_ttl + 1)
    usecases.observe(services, TtlPassed("d-1"), clock())
    complete(services, sim, clock, "d-1")
    store, client = services.store, create_app(services=services).test_client()
    [first] = store.claim_messages("w", clock(), 10, 30)
    store.record_attempt(first.seq, "w", now=clock(), error=None, next_attempt_at=None)
    [second] = store.claim_messages("w", clock(), 10, 30)
    on_its_way = client.post(f"/api/v1/outbox/{first.seq}/replay", headers=BEARER)
    assert on_its_way.status_code == 409
    assert on_its_way.get_json()["detail"] == (
        f"message {first.seq}: message {second.seq}, a later status of its instance, is on its way"
    )
    sign_in(client)  # the dashboard's refusal goes back to the instance's page
    answer = post(client, f"/dashboard/outbox/{first.seq}/replay", "/dashboard/")
    assert answer.headers["Location"] == "/dashboard/instances/d-1"
    store.record_attempt(second.seq, "w", now=clock(), error=None, next_attempt_at=None)
    delivered = client.post(f"/api/v1/outbox/{first.seq}/replay", headers=BEARER)
    assert delivered.status_code == 409
    assert "was delivered" in delivered.get_json()["detail"]
    again = client.post(f"/api/v1/outbox/{second.seq}/replay", headers=BEARER)
    assert again.get_json()["status"] == "pending"  # the newest may always go again
    assert [m.status for m in store.messages(status=None, limit=9)] == ["delivered", "pending"]


def test_a_replay_looks_at_its_own_instance_only_and_leaves_a_pending_message_as_it_is(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    forwarding_on(services)
    store, client = services.store, create_app(services=services).test_client()
    complete(services, sim, clock, "a-1")
    [mine] = store.claim_messages("w", clock(), 10, 30)
    store.record_attempt(mine.seq, "w", now=clock(), error="http_500", next_attempt_at=None)
    complete(services, sim, clock, "b-1")  # another instance's later status, delivered
    [other] = store.claim_messages("w", clock(), 10, 30)
    store.record_attempt(other.seq, "w", now=clock(), error=None, next_attempt_at=None)
    again = client.post(f"/api/v1/outbox/{mine.seq}/replay", headers=BEARER)
    assert (again.status_code, again.get_json()["status"]) == (200, "pending")
    [mine] = store.claim_messages("w", clock(), 10, 30)
    later = clock() + 300
    store.record_attempt(mine.seq, "w", now=clock(), error="http_500", next_attempt_at=later)
    pending = client.post(f"/api/v1/outbox/{mine.seq}/replay", headers=BEARER).get_json()
    assert (pending["status"], pending["attempts"]) == ("pending", 1)  # not started over
    [kept] = store.messages(status="pending", limit=9)
    assert kept.next_attempt_at == later


def test_the_contracts_verifier_example_skips_a_seq_it_has_passed() -> None:
    text = (Path(__file__).parent.parent / "docs" / "contract.md").read_text()
    [example] = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def receive" in b]
    handled: list[tuple[str, int]] = []
    last: dict[str, int] = {}
    scope: dict[str, Any] = {
        "FORWARD_SECRET": SECRET,
        "last_seq": lambda instance_id: last.get(instance_id, 0),
        "handle": lambda kind, instance: handled.append((kind, instance["status"])),
        "remember": last.__setitem__,
    }
    exec(example, scope)  # noqa: S102 - the documentation's own code, run as written
    signer = Webhook(SECRET)

    def deliver(seq: int, status: str) -> int:
        instance = {"instanceId": "v-1", "status": status}
        body = json.dumps({"type": f"journey.{status}", "data": {"seq": seq, "instance": instance}})
        now = datetime.now(UTC)
        headers = {
            "webhook-id": f"msg_gbgr_{seq}",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signer.sign(f"msg_gbgr_{seq}", now, body),
        }
        return int(scope["receive"](body.encode(), headers))

    assert deliver(7, "completed") == 204
    assert deliver(7, "completed") == 204  # again: at least once
    assert deliver(3, "expired") == 204  # older than what it has
    assert handled == [("journey.completed", "completed")]
    assert int(scope["receive"](b"{}", {"webhook-id": "x"})) == 400


MESSAGE = json.dumps({"data": {"seq": 7, "instance": {"instanceId": "v-1"}}})


def test_an_answer_with_a_body_is_read_and_one_too_large_is_refused() -> None:
    with running(App(script={"v-1": [200]}, answer=b"thanks" * 100)) as app:
        assert Downstream(app.url, SECRET).send(7, MESSAGE).error is None
    with running(App(script={"v-1": [200]}, answer=b"x" * (MAX_ANSWER + 1))) as app:
        assert Downstream(app.url, SECRET).send(7, MESSAGE).error == "too_large"


def test_forwards_never_go_through_a_proxy_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with running(App()) as app:
        assert Downstream(app.url, SECRET).send(7, MESSAGE).error is None
        assert len(app.delivered()) == 1


def test_a_forwarder_needs_a_url_and_a_secret_unless_given_its_downstream(
    services: Services,
) -> None:
    for url, secret in ((None, SECRET), ("https://app.example/hooks", None), (None, None)):
        with_settings(services, forward_url=url, forward_secret=secret)
        with pytest.raises(ValueError, match=r"^forwarding needs RECEIVER_FORWARD_URL and "):
            Forwarder(services)
    given = Forwarder(services, owner="fw-1", downstream=Downstream("https://a.example", SECRET))
    assert given.owner == "fw-1"
    given.close()
    with_settings(services, forward_url="https://a.example", forward_secret=SECRET, poll_lease=5)
    named = Forwarder(services)
    assert re.fullmatch(r".+:\d+:[0-9a-f]{8}", named.owner)  # host, process, start
    # The lease outlives any attempt: twice the deadline, above a short poll lease.
    assert named.lease == 2 * sum(named.downstream.timeout)
    named.close()
