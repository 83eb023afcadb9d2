"""/api/v1 and the health checks through the Flask test client."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from receiver import usecases
from receiver.problemtypes import KINDS
from receiver.services import Services
from receiver.testing.simulator import Simulator
from receiver.web import create_app
from receiver.web.exchange import METHODS
from tests.conftest import API_TOKEN, INSTANCE_FIELDS, with_settings
from tests.test_webhook import basic

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def test_register_is_201_then_200(client) -> None:  # type: ignore[no-untyped-def]
    first = client.post(
        "/api/v1/instances", json={"instanceId": "r-1", "reference": "order-9"}, headers=AUTH
    )
    again = client.post("/api/v1/instances", json={"instanceId": "r-1"}, headers=AUTH)
    assert (first.status_code, again.status_code) == (201, 200)
    body = first.get_json()
    assert body["instanceId"] == "r-1"
    assert body["reference"] == "order-9"
    assert body["status"] == "in_progress"
    assert body["source"] == "api"
    assert body["registeredAt"].endswith("Z")
    assert body["nextPollAt"].endswith("Z")
    assert set(body) == INSTANCE_FIELDS


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 422),
        ({"instanceId": "bad id"}, 422),
        ({"instanceId": "ok", "reference": 5}, 422),
        ({"instanceId": "ok", "reference": "r" * 257}, 422),
        ([], 422),
    ],
)
def test_register_refuses_bad_bodies(client, body, status) -> None:  # type: ignore[no-untyped-def]
    answer = client.post("/api/v1/instances", json=body, headers=AUTH)
    assert answer.status_code == status
    assert answer.mimetype == "application/problem+json"


def test_a_reference_of_256_characters_is_kept_and_257_is_refused_saying_why(client) -> None:  # type: ignore[no-untyped-def]
    longest = client.post(
        "/api/v1/instances", json={"instanceId": "r-256", "reference": "r" * 256}, headers=AUTH
    )
    assert (longest.status_code, longest.get_json()["reference"]) == (201, "r" * 256)
    longer = client.post(
        "/api/v1/instances", json={"instanceId": "r-257", "reference": "r" * 257}, headers=AUTH
    )
    problem = longer.get_json()
    assert (problem["field"], problem["detail"]) == (
        "reference",
        "reference: a string of at most 256 characters, no NUL",
    )


def test_get_unknown_is_404(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/v1/instances/nope", headers=AUTH).status_code == 404
    assert client.get("/api/v1/instances/bad%20id", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": API_TOKEN},
        {"Authorization": f"Basic {API_TOKEN}"},
    ],
)
def test_unknown_or_missing_token_is_401(client, headers) -> None:  # type: ignore[no-untyped-def]
    for answer in (
        client.get("/api/v1/instances", headers=headers),
        client.post("/api/v1/instances", json={"instanceId": "t-1"}, headers=headers),
        client.get("/api/v1/events", headers=headers),
    ):
        assert answer.status_code == 401
        assert answer.mimetype == "application/problem+json"
    assert client.get("/api/v1/instances/t-1", headers=AUTH).status_code == 404


def test_api_is_closed_without_tokens(services: Services) -> None:
    client = create_app(services=with_settings(services, api_tokens=())).test_client()
    assert client.get("/api/v1/instances", headers={"Authorization": "Bearer "}).status_code == 401
    assert client.get("/api/v1/instances", headers=AUTH).status_code == 401


def test_list_filters_and_pages_with_a_cursor(client, clock) -> None:  # type: ignore[no-untyped-def]
    for n in range(5):
        clock.advance(1)
        client.post("/api/v1/instances", json={"instanceId": f"l-{n}"}, headers=AUTH)
    seen, cursor = [], ""
    while True:
        page = client.get(f"/api/v1/instances?limit=2&cursor={cursor}", headers=AUTH).get_json()
        seen += [i["instanceId"] for i in page["instances"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == ["l-4", "l-3", "l-2", "l-1", "l-0"]
    done = client.get("/api/v1/instances?status=completed", headers=AUTH).get_json()
    assert done == {"instances": [], "nextCursor": None}


@pytest.mark.parametrize(
    "query",
    [
        "cursor=garbage!",
        "cursor=WzEsMiwzXQ",
        "status=done",
        "status=",
        "limit=0",
        "limit=",
        "limit=x",
    ],
)
def test_bad_list_parameters_are_400(client, query) -> None:  # type: ignore[no-untyped-def]
    answer = client.get(f"/api/v1/instances?{query}", headers=AUTH)
    assert answer.status_code == 400
    assert answer.mimetype == "application/problem+json"


@pytest.mark.parametrize("query", ["after=-1", "after=x", "limit=0"])
def test_bad_event_parameters_are_400(client, query) -> None:  # type: ignore[no-untyped-def]
    assert client.get(f"/api/v1/events?{query}", headers=AUTH).status_code == 400


def test_poll_fetches_now_and_the_events_feed_shows_the_change(client, sim: Simulator) -> None:  # type: ignore[no-untyped-def]
    sim.set_status("p-1", "InProgress")
    client.post("/api/v1/instances", json={"instanceId": "p-1"}, headers=AUTH)
    first = client.post("/api/v1/instances/p-1/poll", headers=AUTH).get_json()
    assert (first["status"], first["pollErrors"]) == ("in_progress", 0)
    assert first["gbgStatus"] in ("InProgress", "IN_PROGRESS")  # GBG's spelling, as it came
    sim.set_status("p-1", "Completed", "Of Age")
    done = client.post("/api/v1/instances/p-1/poll", headers=AUTH).get_json()
    assert (done["status"], done["outcome"], done["source"]) == ("completed", "Of Age", "api")
    assert done["completedAt"] is not None
    assert done["nextPollAt"] is None
    feed = client.get("/api/v1/events?after=0", headers=AUTH).get_json()
    assert [
        (e["instanceId"], e["status"], e["previousStatus"], e["source"]) for e in feed["events"]
    ] == [("p-1", "completed", "in_progress", "api")]
    assert feed["nextAfter"] == feed["events"][0]["seq"]
    empty = client.get(f"/api/v1/events?after={feed['nextAfter']}", headers=AUTH).get_json()
    assert empty == {"events": [], "nextAfter": feed["nextAfter"]}


def test_poll_of_unknown_instance_is_404(client) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/api/v1/instances/nope/poll", headers=AUTH).status_code == 404


def test_poll_while_a_poller_holds_the_lease_is_409(client, services: Services, clock) -> None:  # type: ignore[no-untyped-def]
    client.post("/api/v1/instances", json={"instanceId": "busy-1"}, headers=AUTH)
    services.store.claim("busy-1", "poller-x", clock(), 60)
    answer = client.post("/api/v1/instances/busy-1/poll", headers=AUTH)
    assert answer.status_code == 409
    assert answer.headers["Retry-After"] == "1"


def test_poll_resumes_a_given_up_instance(client, services: Services, sim: Simulator) -> None:  # type: ignore[no-untyped-def]
    from receiver.testing.simulator import Fault

    with_settings(services, poll_max_errors=1)
    sim.set_status("g-1", "InProgress")
    client.post("/api/v1/instances", json={"instanceId": "g-1"}, headers=AUTH)
    sim.add_fault(Fault("503"))
    gave_up = client.post("/api/v1/instances/g-1/poll", headers=AUTH).get_json()
    assert gave_up["pollingGaveUp"] is True
    assert gave_up["nextPollAt"] is None
    resumed = client.post("/api/v1/instances/g-1/poll", headers=AUTH).get_json()
    assert resumed["pollingGaveUp"] is False
    assert resumed["nextPollAt"] is not None


def test_readyz_is_200_when_the_store_answers(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/readyz").status_code == 200
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_a_made_up_method_adds_no_metric_series(client, services: Services) -> None:  # type: ignore[no-untyped-def]
    for method in ("BREW", "X-ANYTHING-1", "X-ANYTHING-2"):
        assert client.open("/healthz", method=method).status_code == 405
    text = services.metrics.render(services.store, services.clock)[0].decode()
    assert 'method="BREW"' not in text
    assert 'endpoint="unmatched",method="other",status="405"' in text
    # Nor a series looked up and kept per made-up method: they all share one.
    assert [key for key in services.metrics.answers if key[0] not in METHODS] == [
        ("other", "unmatched", 405)
    ]


def test_replay_of_an_id_no_store_can_hold_is_404(client) -> None:  # type: ignore[no-untyped-def]
    answer = client.post("/api/v1/outbox/9223372036854775808/replay", headers=AUTH)
    assert answer.status_code == 404
    assert answer.mimetype == "application/problem+json"


def cursor_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "raw",
    [
        b"[" + b"9" * 400 + b', "x-1"]',  # an integer no float holds
        b'[1e999, "x-1"]',
        b'[NaN, "x-1"]',
        b'["1.5", "x-1"]',
        b'[true, "x-1"]',
        b"[1.5, 7]",
        b'[1.5, "no/such id"]',
        b"{}",
        b"[1.5]",
        b"[" * 5000 + b"]" * 5000,
        b"\xff\xfe",
    ],
)
def test_every_malformed_cursor_is_a_400(client, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    answer = client.get(f"/api/v1/instances?cursor={cursor_of(raw)}", headers=AUTH)
    assert answer.status_code == 400
    assert answer.get_json()["type"] == "/problems/invalid-cursor"


def test_deliveries_come_a_page_at_a_time(client, services: Services) -> None:  # type: ignore[no-untyped-def]
    for _ in range(5):
        answer = client.post("/webhooks/gbg", json={"instanceId": "d-1"}, headers=basic())
        assert answer.status_code == 202
    assert usecases.fold_inbox(services) == 5
    seen, after = [], 0
    while True:
        page = client.get(f"/api/v1/instances/d-1/deliveries?limit=2&after={after}", headers=AUTH)
        assert page.status_code == 200, page.get_json()
        body = page.get_json()
        if not body["deliveries"]:
            assert body["nextAfter"] == after
            break
        assert len(body["deliveries"]) <= 2
        seen += [d["id"] for d in body["deliveries"]]
        after = body["nextAfter"]
    assert len(seen) == 5
    assert seen == sorted(seen)
    for query in ("limit=0", "limit=1001", "after=-1", "after=x"):
        bad = client.get(f"/api/v1/instances/d-1/deliveries?{query}", headers=AUTH)
        assert bad.status_code == 400


def test_a_nul_is_refused_only_where_it_would_be_kept(client) -> None:  # type: ignore[no-untyped-def]
    json_ = {**AUTH, "Content-Type": "application/json"}
    kept = client.post(
        "/api/v1/instances", data=b'{"instanceId": "z-1", "reference": "a\\u0000b"}', headers=json_
    )
    assert (kept.status_code, kept.get_json()["field"]) == (422, "reference")
    assert client.get("/api/v1/instances?reference=a%00b", headers=AUTH).status_code == 400
    passed_on = client.post(  # the context goes to GBG and is never stored
        "/api/v1/journeys",
        data=b'{"resourceId": "age-check@latest", "context": {"n\\u0000": "x"}}',
        headers=json_,
    )
    assert passed_on.status_code == 201


def test_the_services_address_leads_to_the_dashboard(client) -> None:  # type: ignore[no-untyped-def]
    answer = client.get("/")
    assert (answer.status_code, answer.headers["Location"]) == (302, "/dashboard/")


def test_an_instance_whose_webhooks_wait_in_the_inbox_says_so(client) -> None:  # type: ignore[no-untyped-def]
    for _ in range(2):
        client.post("/webhooks/gbg", json={"instanceId": "w-9"}, headers=basic())
    waiting = client.get("/api/v1/instances/w-9", headers=AUTH)
    assert waiting.status_code == 404
    assert waiting.get_json()["detail"].startswith(
        "no such instance yet: 2 webhook deliveries for it wait in the inbox"
    )
    unknown = client.get("/api/v1/instances/w-10", headers=AUTH).get_json()
    assert unknown["detail"] == "no such instance"


def test_each_problem_has_a_type_a_program_can_tell_apart(client) -> None:  # type: ignore[no-untyped-def]
    """Two 404s, a 400 with the parameter at fault, each with its own stable type, and
    the service describes each type it answers with."""
    unknown = client.get("/api/v1/instances/nobody", headers=AUTH).get_json()
    assert (unknown["type"], unknown["status"]) == ("/problems/unknown-instance", 404)
    message = client.post("/api/v1/outbox/99/replay", headers=AUTH).get_json()
    assert message["type"] == "/problems/unknown-message"
    bad = client.get("/api/v1/instances?limit=0", headers=AUTH).get_json()
    assert (bad["type"], bad["field"]) == ("/problems/invalid-parameter", "limit")
    cursor = client.get("/api/v1/instances?cursor=forged", headers=AUTH).get_json()
    assert (cursor["type"], cursor["field"]) == ("/problems/invalid-cursor", "cursor")
    listed = client.get("/problems").get_json()["problems"]
    assert {p["type"] for p in listed} >= {unknown["type"], bad["type"], cursor["type"]}
    described = client.get(unknown["type"]).get_json()
    assert (described["status"], described["title"]) == (404, "Unknown instance")
    assert client.get("/problems/no-such-kind").status_code == 404
    route = client.get("/no/such/route").get_json()
    assert route["type"] == "about:blank"  # HTTP's own: nothing more to say


def test_the_contract_lists_every_problem_type() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "contract.md").read_text()
    for kind, (status, _, _) in KINDS.items():
        assert f"| `/problems/{kind}` | {status} |" in text
