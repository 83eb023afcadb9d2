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
    long = v2([{"result": {"outcome": "O" * 300}}])
    assert parse_state(long).outcome == "O" * 256
    assert parse_state(long, store_pii=True).outcome == "O" * 256  # kept whole, cut all the same
    assert parse_state(v2([{"result": {"outcome": 5}}])).outcome is None


def nested(depth: int) -> Any:
    value: Any = {"outcome": "Deep"}
    for _ in range(depth):
        value = [value]
    return value


def test_v1_outcomes_are_found_in_data_down_to_eight_levels() -> None:
    assert parse_state({"status": "Completed", "data": nested(8)}).outcome == "Deep"
    assert parse_state({"status": "Completed", "data": nested(9)}).outcome is None
    data = {"a": {"outcome": ""}, "b": [{"c": {"outcome": "Found"}}]}
    assert parse_state({"status": "Completed", "data": data}).outcome == "Found"


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
    assert v1.journey == {"startedAt": "x", "endedAt": None}


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
