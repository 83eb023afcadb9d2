"""Safe retries: a journey start with an Idempotency-Key answers, within a day, the
instance the first request started; GBG is asked once."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from receiver import web
from receiver.services import Services
from receiver.testing.simulator import Fault, Simulator
from receiver.web import create_app
from tests.conftest import API_TOKEN, FakeClock

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
JOURNEY = {"resourceId": "age-check@latest", "reference": "order-9"}


def starts(sim: Simulator) -> int:
    return len(sim.instances)


def test_a_retry_with_the_same_key_answers_the_first_start(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    client = create_app(services=services).test_client()
    keyed = AUTH | {"Idempotency-Key": "order-9-start"}
    first = client.post("/api/v1/journeys", json=JOURNEY, headers=keyed)
    assert first.status_code == 201
    again = client.post("/api/v1/journeys", json=JOURNEY, headers=keyed)  # after a timeout
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["instanceId"] == first.get_json()["instanceId"]
    assert starts(sim) == 1  # one journey at GBG, paid once
    other: dict[str, Any] = JOURNEY | {"reference": "order-10"}
    reused = client.post("/api/v1/journeys", json=other, headers=keyed)
    assert (reused.status_code, reused.get_json()["type"]) == (
        422,
        "/problems/idempotency-key-reused",
    )
    assert reused.get_json()["detail"] == "this key came with another body today"
    clock.advance(86401)  # a day later the key is free again
    later = client.post("/api/v1/journeys", json=other, headers=keyed)
    assert later.status_code == 201
    assert later.get_json()["instanceId"] != first.get_json()["instanceId"]
    unkeyed = [client.post("/api/v1/journeys", json=JOURNEY, headers=AUTH) for _ in range(2)]
    assert len({a.get_json()["instanceId"] for a in unkeyed}) == 2  # no key: two journeys
    bad = client.post("/api/v1/journeys", json=JOURNEY, headers=AUTH | {"Idempotency-Key": ""})
    assert bad.status_code == 400


def test_a_start_that_failed_lets_the_retry_start(services: Services, sim: Simulator) -> None:
    client = create_app(services=services).test_client()
    keyed = AUTH | {"Idempotency-Key": "retry-after-503"}
    sim.add_fault(Fault("503", on="start"))
    failed = client.post("/api/v1/journeys", json=JOURNEY, headers=keyed)
    assert failed.status_code == 503
    assert starts(sim) == 0
    retried = client.post("/api/v1/journeys", json=JOURNEY, headers=keyed)
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried.headers
    assert starts(sim) == 1


def test_a_retry_while_the_first_is_under_way_is_told_to_wait(services: Services) -> None:
    client = create_app(services=services).test_client()
    body_hash = hashlib.sha256(json.dumps(JOURNEY, sort_keys=True).encode()).hexdigest()
    assert services.store.claim_key("busy-1", body_hash, services.clock()) is None  # the first
    waiting = client.post(
        "/api/v1/journeys", json=JOURNEY, headers=AUTH | {"Idempotency-Key": "busy-1"}
    )
    assert (waiting.status_code, waiting.headers["Retry-After"]) == (409, "1")
    assert waiting.get_json()["type"] == "/problems/request-in-progress"
    assert waiting.get_json()["detail"] == "the first request with this key is not done yet"


def test_the_document_and_the_server_agree_on_which_keys_are_sane(
    services: Services, sim: Simulator
) -> None:
    """A key the document allows is taken, one it forbids is a 400: a generated client
    that checks the pattern never meets a 400 for a key it let through."""
    spec = json.loads(Path(web.__file__).with_name("openapi.json").read_text())
    [param] = [
        p
        for p in spec["paths"]["/api/v1/journeys"]["post"]["parameters"]
        if p.get("name") == "Idempotency-Key"
    ]
    pattern = re.compile(param["schema"]["pattern"])
    client = create_app(services=services).test_client()
    keys = ["k", "order 9 retry", "~!" * 127 + "x", "x" * 256, " k", "k ", "é", "k\x85", "\t"]
    for key in keys:
        allowed = bool(pattern.search(key)) and len(key) <= param["schema"]["maxLength"]
        answer = client.post(
            "/api/v1/journeys", json=JOURNEY, headers=AUTH | {"Idempotency-Key": key}
        )
        assert answer.status_code == (201 if allowed else 400), key
    assert starts(sim) == 3
