"""Reading GBG's state answers, rule by rule: statuses, outcomes, journeys, times."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from receiver.errors import GbgUnavailable
from receiver.gbg.states import parse_state


def v2(steps: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    process: dict[str, Any] = {"steps": steps or []}
    return {"status": "Completed", "context": {"process": process}, **extra}


def test_an_answer_without_a_status_is_garbage_not_an_ending() -> None:
    for body in ({}, {"status": ""}, {"status": 3}):
        with pytest.raises(GbgUnavailable) as caught:
            parse_state(body)
        assert (str(caught.value), caught.value.kind) == (
            "state answer without a status",
            "garbage",
        )


def test_an_undocumented_status_is_logged_and_refused(caplog: pytest.LogCaptureFixture) -> None:
    status = "Approved" + "x" * 80
    with pytest.raises(GbgUnavailable) as caught:
        parse_state({"status": status})
    assert caught.value.kind == "unknown_status"
    assert str(caught.value) == f"undocumented status {status[:64]!r}"
    [record] = [r for r in caplog.records if r.getMessage() == "gbg.unknown_status"]
    assert (record.levelname, record.gbg_status) == ("WARNING", status[:64])  # type: ignore[attr-defined]


def test_any_spelling_of_a_status_is_kept_as_gbg_wrote_it_up_to_64_characters() -> None:
    status = "IN_PROGRESS" + "_" * 60
    state = parse_state({"status": status})
    assert (state.status, state.gbg_status) == ("in_progress", status[:64])


def test_the_last_step_outcome_wins_and_empty_or_odd_ones_are_passed_over() -> None:
    steps = [
        {"result": {"outcome": "Not Of Age"}},
        {"result": {"outcome": "Of Age"}},
        {"result": {"outcome": ""}},
        {"result": {"outcome": None}},
        {"result": "odd"},
        "odd",
    ]
    assert parse_state(v2(steps)).outcome == "Of Age"
    assert parse_state(v2([{"result": {"outcome": 5}}])).outcome is None


@pytest.mark.parametrize("store_pii", [False, True])
@pytest.mark.parametrize(
    "outcome",
    [
        "Jane Doe, 1 High St",  # an address
        "O" * 300,  # no label
        "Born 01.01.1990",
        "Ref 1234567",
        "jane.doe@example.com",
        "Of Age\nJane Doe",
    ],
)
def test_an_outcome_is_only_a_short_label_whatever_the_setting(
    outcome: str, store_pii: bool
) -> None:
    assert parse_state(v2([{"result": {"outcome": outcome}}]), store_pii=store_pii).outcome is None


@pytest.mark.parametrize("outcome", ["Of Age", "Not Of Age", "Refer", "Age 18+", "PASS"])
def test_short_labels_are_kept_as_outcomes(outcome: str) -> None:
    assert parse_state(v2([{"result": {"outcome": outcome}}])).outcome == outcome


def test_v1_data_is_no_documented_outcome_field() -> None:
    data = {"outcome": "Jane Doe, 1 High St", "b": [{"c": {"outcome": "Of Age"}}]}
    assert parse_state({"status": "Completed", "data": data}).outcome is None


def test_a_result_that_is_no_object_is_not_kept() -> None:
    body = {"status": "Completed", "context": {"result": "text", "process": {}}}
    assert parse_state(body, store_pii=True).result is None
    body["context"]["result"] = {"outcome": "Of Age"}  # type: ignore[index]
    assert parse_state(body, store_pii=True).result == {"outcome": "Of Age"}


def test_v2_journey_times_win_over_v1_metadata() -> None:
    journey = {"name": "age", "endedAt": "2026-01-02T03:04:05Z"}
    body = v2(metaData={"createdTime": "2026-01-01T00:00:00Z", "completedTime": ""})
    body["context"]["process"]["journey"] = journey
    state = parse_state(body)
    assert state.journey is not None
    assert (state.journey["name"], state.journey["endedAt"]) == ("age", "2026-01-02T03:04:05Z")
    assert state.journey["id"] is None  # every key, null where GBG has none
    assert state.completed_at == 1767323045.0
    v1 = parse_state(
        {"status": "InProgress", "metaData": {"createdTime": "x", "completedTime": ""}}
    )
    assert v1.journey == {"startedAt": None, "endedAt": None}  # "x" is no time


@pytest.mark.parametrize("store_pii", [False, True])
def test_a_time_field_keeps_only_a_timestamp(store_pii: bool) -> None:
    person = {"firstName": "Jane", "lastName": "Doe"}
    v1 = {"status": "Completed", "metaData": {"createdTime": person, "completedTime": "Jane"}}
    state = parse_state(v1, store_pii=store_pii)
    assert state.journey == {"startedAt": None, "endedAt": None}
    assert "Jane" not in str(parse_state(v1).document)
    body = v2()
    body["context"]["process"]["journey"] = {"startedAt": person, "endedAt": 1767323045000}
    journey = parse_state(body, store_pii=store_pii).journey
    assert journey is not None
    assert (journey["startedAt"], journey["endedAt"]) == (None, 1767323045000)
    stamped = {"status": "Completed", "metaData": {"createdTime": "2026-01-01T00:00:00.213Z"}}
    assert parse_state(stamped).journey == {
        "startedAt": "2026-01-01T00:00:00.213Z",
        "endedAt": None,
    }


@pytest.fixture
def tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A machine whose local time is not UTC."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (1_700_000_000, 1_700_000_000.0),  # epoch seconds
        (1_700_000_000_000, 1_700_000_000.0),  # epoch milliseconds
        (100_000_000_000, 100_000_000_000.0),  # 1e11 exactly: still seconds (year 5138)
        (100_000_000_001, 100_000_000.001),  # above: milliseconds
        (0, 0.0),  # the epoch itself
        (-1, None),
        (253_402_300_799_999, 253_402_300_799.999),  # the last millisecond of 9999
        (253_402_300_800_000, None),  # year 10000
        (True, None),
        ("2026-01-02T03:04:05Z", 1767323045.0),
        ("2026-01-02T03:04:05", 1767323045.0),  # no zone: GBG's times are UTC
        ("2026-01-02T12:04:05+09:00", 1767323045.0),
        ("9999-12-31T23:59:59Z", 253_402_300_799.0),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_times_are_read_as_gbg_writes_them(tokyo: None, value: Any, seconds: float | None) -> None:
    body = {"status": "Completed", "metaData": {"completedTime": value}}
    assert parse_state(body).completed_at == seconds
