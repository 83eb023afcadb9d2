"""Personal data is kept only by the operator's choice, and erase removes what was kept.

A full journey (webhook, confirming fetch, completion) whose webhook and state carry a
person; then every table (and, on SQLite, the database's files byte for byte) and every
log record is searched for that person.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from receiver import usecases
from receiver.domain.privacy import RESULT, allowed_headers, minimal
from receiver.services import Services
from receiver.store.schema import metadata
from receiver.testing.simulator import Simulator
from receiver.web import create_app
from tests.conftest import API_TOKEN, FakeClock, with_settings
from tests.test_poller import poll_once
from tests.test_webhook import basic

SUBJECT = {
    "identity": {
        "firstName": "Zelphine",
        "lastNames": ["Quorrington"],
        "dateOfBirth": "1971-04-09",
        "currentAddress": {
            "lines": ["17 Wexley Mews"],
            "locality": "Brambleford",
            "postalCode": "QX9 4ZZ",
            "country": "GB",
        },
    }
}
NOTE = {"idNumber": "ZX4481273"}
PERSONAL = ("Zelphine", "Quorrington", "1971-04-09", "17 Wexley Mews", "Brambleford", "QX9 4ZZ")
PERSONAL += ("ZX4481273",)


def stored_text(services: Services) -> str:
    """Every row of every table, as text."""
    with services.store.engine.connect() as conn:
        rows = [
            dict(r._mapping) for t in metadata.sorted_tables for r in conn.execute(sa.select(t))
        ]
    return json.dumps(rows, default=lambda v: v.decode() if isinstance(v, bytes) else str(v))


def file_bytes(services: Services) -> bytes:
    """The SQLite database and its write-ahead log as they lie on disk (b"" for PostgreSQL)."""
    database = services.store.engine.url.database
    if services.store.db.is_postgres or not database:
        return b""
    return b"".join(p.read_bytes() for p in Path(database).parent.glob(Path(database).name + "*"))


def found(personal: tuple[str, ...], text: str, raw: bytes) -> set[str]:
    return {p for p in personal if p in text or p.encode() in raw}


def journey(services: Services, sim: Simulator, clock: FakeClock) -> None:
    sim.create("pii-1", subject=SUBJECT, note=NOTE)
    sim.set_status("pii-1", "Completed", "Of Age")
    client = create_app(services=services).test_client()
    body = {
        "instanceId": "pii-1",
        "status": "Completed",
        "message": "Zelphine Quorrington finished",
        "context": {"subject": SUBJECT},
    }
    assert client.post("/webhooks/gbg", json=body, headers=basic()).status_code == 202
    assert usecases.fold_inbox(services) == 1
    clock.advance(1)
    poll_once(services)
    done = services.store.get("pii-1")
    assert done is not None
    assert (done.status, done.outcome) == ("completed", "Of Age")


def pii_on(services: Services) -> None:
    with_settings(services, store_pii=True)
    services.gbg.store_pii = True  # type: ignore[union-attr]


def test_with_pii_storage_off_no_personal_string_is_stored_or_logged(
    services: Services, sim: Simulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    journey(services, sim, clock)
    assert found(PERSONAL, stored_text(services), file_bytes(services)) == set()
    logged = repr([r.__dict__ for r in caplog.records])
    assert found(PERSONAL, logged, b"") == set()
    # What is kept still tells the application what GBG decided.
    state = services.store.get("pii-1").state  # type: ignore[union-attr]
    assert state is not None
    [step] = state["context"]["process"]["steps"]
    assert (step["result"]["status"], step["result"]["outcome"]) == ("complete", "Of Age")
    assert step["result"]["advice"]["age_result_capabilities"] == ["resultcode.confirm.age"]
    assert set(step["result"]) == {"status", "outcome", "advice"}  # the note is gone


def test_with_pii_storage_on_personal_data_stays_until_erased(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    pii_on(services)
    journey(services, sim, clock)
    assert found(PERSONAL, stored_text(services), b"") == set(PERSONAL)
    if not services.store.db.is_postgres:  # the byte search does see what is on disk
        assert found(PERSONAL, "", file_bytes(services)) == set(PERSONAL)
    client = create_app(services=services).test_client()
    bearer = {"Authorization": f"Bearer {API_TOKEN}"}
    erased = client.delete("/api/v1/instances/pii-1", headers=bearer)
    assert erased.status_code == 200
    assert (erased.get_json()["status"], erased.get_json()["outcome"]) == ("completed", None)
    assert found(PERSONAL, stored_text(services), file_bytes(services)) == set()
    assert services.store.deliveries_for("pii-1") == []
    assert [e["status"] for e in services.store.events_after(0, 10)] == ["completed"]
    assert client.delete("/api/v1/instances/nobody", headers=bearer).status_code == 404


def test_erase_folds_an_acknowledged_delivery_before_deleting_it(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    client = create_app(services=services).test_client()
    assert (
        client.post("/webhooks/gbg", json={"instanceId": "e-1"}, headers=basic()).status_code == 202
    )
    arrived = services.clock()
    clock.advance(5)  # another instance's webhook, later and not folded either
    assert (
        client.post("/webhooks/gbg", json={"instanceId": "e-2"}, headers=basic()).status_code == 202
    )
    erased = usecases.erase(services, "e-1")  # the worker has not folded it yet
    assert erased is not None
    assert erased.webhook_received_at == arrived  # its own delivery, not e-2's
    assert services.store.deliveries_for("e-1") == []
    [other] = services.store.deliveries_for("e-2")
    assert other["folded_at"] is None  # left for the worker


def test_erase_folds_nothing_already_folded_again(services: Services, clock: FakeClock) -> None:
    client = create_app(services=services).test_client()
    assert (
        client.post("/webhooks/gbg", json={"instanceId": "e-1"}, headers=basic()).status_code == 202
    )
    assert usecases.fold_inbox(services) == 1
    clock.advance(60)
    usecases.poll_now(services, "e-1")  # a later change: the instance is newer than its webhook
    before = services.store.get("e-1")
    erased = usecases.erase(services, "e-1")
    assert before is not None
    assert erased is not None
    assert (erased.updated_at, erased.webhook_received_at) == (
        before.updated_at,
        before.webhook_received_at,
    )


def test_retention_forgets_finished_instances_personal_data(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    pii_on(services)
    journey(services, sim, clock)
    usecases.register(services, "still-running", "customer-42")
    assert usecases.purge(services) == (0, 0)  # nothing is 30 days old yet
    clock.advance(31 * 86400)
    assert usecases.purge(services) == (2, 1)  # the delivery and the fetch; the data
    assert found(PERSONAL, stored_text(services), file_bytes(services)) == set()
    kept = services.store.get("pii-1")
    assert kept is not None
    assert (kept.status, kept.reference, kept.outcome) == (
        "completed",
        None,
        None,
    )
    # An unfinished instance keeps what the application needs to find it.
    assert services.store.get("still-running").reference == "customer-42"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "code",
    [
        "01.01.1990",  # a date of birth
        "Jane.Doe",  # a name
        "AB.1234567",  # a document number
        "resultcode.confirm.age Ada Lovelace",  # a code, then a name
        "resultcode.confirm.age\nAda",
        "resultcode",  # one word: no code
        "resultcode.age.1990",
    ],
)
def test_an_advice_code_is_matched_whole_against_a_tight_pattern(code: str) -> None:
    advice = {"capabilities": [code, "resultcode.confirm.age"], "single": code}
    assert minimal({"advice": advice}, RESULT) == {
        "advice": {"capabilities": ["resultcode.confirm.age"]}
    }


def test_advice_codes_as_gbg_writes_them_are_kept() -> None:
    codes = ["resultcode.confirm.age", "resultcode.age_verified", "result-code.not-of-age"]
    assert minimal({"advice": {"c": codes}}, RESULT) == {"advice": {"c": codes}}


def test_an_advice_key_is_a_name_of_letters_digits_and_dots_never_free_text() -> None:
    code = "resultcode.confirm.age"
    advice = {"AgeCheck_2.v-1": code, "Jane Doe": code, "x" * 65: code, "y" * 64: code}
    assert minimal({"advice": advice}, RESULT) == {
        "advice": {"AgeCheck_2.v-1": code, "y" * 64: code}
    }


def test_a_scalar_field_holding_an_object_or_a_list_is_dropped() -> None:
    document = {"status": {"firstName": "Jane"}, "instanceId": ["Jane Doe"], "outcome": None}
    assert minimal(document, RESULT | {"instanceId": True}) == {}
    assert minimal({"status": 3, "instanceId": True}, RESULT | {"instanceId": True}) == {
        "status": 3,
        "instanceId": True,
    }


def test_an_outcome_label_is_kept_up_to_48_characters() -> None:
    longest = "A" * 24 + " " + "B" * 23
    assert minimal({"outcome": longest}, RESULT) == {"outcome": longest}
    assert minimal({"outcome": longest + "B"}, RESULT) == {}


def test_the_secret_header_is_never_kept_even_when_it_is_an_allowed_name() -> None:
    headers = [("X-Correlation-Id", "the-secret"), ("User-Agent", "GBG")]
    assert allowed_headers(headers, "x-correlation-ID") == {"User-Agent": "GBG"}


def test_empty_advice_and_empty_objects_are_left_out() -> None:
    result = {"status": "complete", "advice": {"age": [], "risk": ["Jane Doe"], "x": "01.01.1990"}}
    assert minimal(result, RESULT) == {"status": "complete"}
    assert minimal({"advice": {}}, RESULT) == {}
