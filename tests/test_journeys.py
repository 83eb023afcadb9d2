"""Journeys from start to result: the start proxy, the per-instance reads, and GBG's own
documented answers (copied verbatim from its v1 and v2 pages into tests/fixtures/gbg)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from receiver import usecases
from receiver.domain.model import COMPLETED, IN_PROGRESS
from receiver.gbg.states import parse_state
from receiver.services import Services
from receiver.shapes import steps
from receiver.testing.simulator import Fault, Simulator
from tests.conftest import API_TOKEN, FakeClock
from tests.test_poller import poll_once
from tests.test_webhook import basic

FIXTURES = Path(__file__).parent / "fixtures" / "gbg"
BEARER = {"Authorization": f"Bearer {API_TOKEN}"}
PERSON = ("John", "Doe", "1982-09-27", "New Orleans", "900010", "6554532688")


def documented(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def test_gbgs_documented_completed_answer_is_read_and_minimised() -> None:
    state = parse_state(documented("v2-completed.json"))
    assert (state.status, state.gbg_status, state.outcome) == (COMPLETED, "Completed", "Of Age")
    assert state.journey == {
        "name": "Age verification",
        "id": "9dcd95e06495ec32c9ad149283a935548e4a380461b9ee6981af0fef5c70c8c3",
        "version": "5f7yigc4",
        "startedAt": "2026-03-16T23:56:04.097Z",
        "endedAt": "2026-03-16T23:57:38.417Z",
        "durationMilliSec": 94320,
    }
    assert state.completed_at == pytest.approx(1773705458.417)
    assert not any(p in json.dumps(state.document) for p in PERSON)  # the note's ID number too
    [step] = steps(state.document) or []
    assert step["nodeId"] == "mp586xkhweua5v4z5n"
    assert step["result"]["outcome"] == "Of Age"
    assert step["result"]["advice"]["age_result_capabilities"] == ["resultcode.confirm.age"]
    kept = parse_state(documented("v2-completed.json"), store_pii=True).document
    assert kept == documented("v2-completed.json")


def test_gbgs_documented_pending_answers_are_in_progress_with_no_end() -> None:
    v2 = parse_state(documented("v2-pending.json"))
    assert (v2.status, v2.completed_at) == (IN_PROGRESS, None)
    assert v2.journey is not None
    assert v2.journey["endedAt"] is None
    assert steps(v2.document) == []
    v1 = parse_state(documented("v1-in-progress.json"))
    assert (v1.status, v1.completed_at) == (IN_PROGRESS, None)
    assert v1.journey == {"startedAt": "2024-02-15T22:16:33.213Z", "endedAt": None}  # not ""


def test_the_application_starts_a_journey_and_reads_its_decision(
    services: Services,
    sim: Simulator,
    clock: FakeClock,
    client,  # type: ignore[no-untyped-def]
) -> None:
    subject = {"identity": {"firstName": "Ada", "dateOfBirth": "1815-12-10"}}
    body = {
        "resourceId": "age-check@latest",
        "reference": "order-9",
        "context": {"subject": subject},
    }
    started = client.post("/api/v1/journeys", json=body, headers=BEARER)
    assert started.status_code == 201
    journey = started.get_json()
    instance_id = journey["instanceId"]
    assert journey["instanceUrl"].endswith(f"/journey/{instance_id}")  # what the person opens
    assert (journey["reference"], journey["status"]) == ("order-9", "in_progress")
    sim.set_status(instance_id, "Completed", "Of Age")
    assert (
        client.post("/webhooks/gbg", json={"instanceId": instance_id}, headers=basic()).status_code
        == 202
    )
    usecases.fold_inbox(services)
    clock.advance(1)
    poll_once(services)
    done = client.get(f"/api/v1/instances/{instance_id}", headers=BEARER).get_json()
    assert (done["status"], done["outcome"]) == ("completed", "Of Age")
    assert done["instanceUrl"] == journey["instanceUrl"]  # kept with the instance
    assert done["steps"][0]["result"]["advice"]["age_result_capabilities"] == [
        "resultcode.confirm.age"
    ]
    history = client.get(f"/api/v1/instances/{instance_id}/events", headers=BEARER).get_json()
    assert [(e["previousStatus"], e["status"]) for e in history["events"]] == [
        ("in_progress", "completed")
    ]
    deliveries = client.get(f"/api/v1/instances/{instance_id}/deliveries", headers=BEARER)
    [delivery] = deliveries.get_json()["deliveries"]
    assert delivery["body"] == {"instanceId": instance_id}
    state = client.get(f"/api/v1/instances/{instance_id}/state", headers=BEARER).get_json()["state"]
    assert state["status"] in ("Completed", "COMPLETED")
    assert "Ada" not in json.dumps(state)
    assert "subject" not in state["context"]
    assert sim.instances[instance_id].subject == subject  # GBG got the context, we kept none
    for path in ("events", "deliveries", "state"):
        assert client.get(f"/api/v1/instances/nobody/{path}", headers=BEARER).status_code == 404


@pytest.mark.parametrize(
    ("fault", "status", "detail", "wait"),
    [
        ("503", 503, "no journey was started", "5"),  # GBG said nothing of when: 5 s
        ("429", 503, "no journey was started", "7"),  # GBG's own Retry-After, passed on
        ("404", 400, "GBG answered 404", None),
        ("401", 502, "see the server's log", None),
        ("timeout", 503, "no journey was started", "5"),
    ],
)
def test_gbg_refusing_or_failing_a_start_is_a_clear_problem_and_registers_nothing(  # type: ignore[no-untyped-def]
    services: Services,
    sim: Simulator,
    client,
    fault: str,
    status: int,
    detail: str,
    wait: str | None,
) -> None:
    sim.add_fault(Fault(fault, on="start", count=2, delay=3.0, retry_after=7))
    answer = client.post("/api/v1/journeys", json={"resourceId": "x@latest"}, headers=BEARER)
    assert answer.status_code == status
    assert answer.mimetype == "application/problem+json"
    assert answer.get_json()["detail"] == detail
    assert answer.headers.get("Retry-After") == wait
    assert services.store.page(status=None, limit=10, after=None) == []


@pytest.mark.parametrize(
    "body", [{}, {"resourceId": ""}, {"resourceId": 7}, {"resourceId": "r", "context": []}]
)
def test_a_bad_start_request_is_422(client, body: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    answer = client.post("/api/v1/journeys", json=body, headers=BEARER)
    assert answer.status_code == 422


def keys(document: Any) -> Any:
    """A document's shape: its keys at every depth, a list by its first item."""
    if isinstance(document, dict):
        return {key: keys(value) for key, value in document.items()}
    if isinstance(document, list):
        return [keys(document[0])] if document else []
    return None


def test_the_simulator_answers_with_gbgs_documented_keys(sim: Simulator) -> None:
    from receiver.testing.answers import state_v1, state_v2

    instance_id = sim.create()
    pending = sim.instances[instance_id]
    assert keys(state_v2(pending)) == keys(documented("v2-pending.json"))
    assert keys(state_v1(pending)) == keys(documented("v1-in-progress.json"))
    assert state_v1(pending)["metaData"]["completedTime"] == ""  # as GBG's v1 says it
    sim.set_status(instance_id, "Completed", "Of Age")
    assert keys(state_v2(sim.instances[instance_id])) == keys(documented("v2-completed.json"))
    spellings = {state_v2(sim.instances[sim.create(f"s-{n}")])["status"] for n in range(8)}
    assert spellings == {"InProgress", "IN_PROGRESS"}  # both of GBG's spellings appear
