"""Log lines: JSON or text, the same fields in both, no secret in either."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from receiver.config import Settings
from receiver.log import configure_logging, request_id
from receiver.services import Services
from receiver.web import create_app, webhook
from tests.appserver import SECRET
from tests.test_webhook import URL, basic

log = logging.getLogger("receiver.test")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    yield stream
    for handler in list(logging.getLogger().handlers):
        if getattr(handler, "_receiver", False):
            logging.getLogger().removeHandler(handler)


def emit(settings: Settings, stream: io.StringIO) -> str:
    configure_logging(settings, stream=stream)
    log.info(
        "poll.fetched",
        extra={
            "instance_id": "i-1",
            "outcome": "http_404",
            "duration_ms": 12.5,
            "detail": 'two words, a "quote" and a=b',
            "empty": "",
            "gave_up": False,
            "secret_seen": f"key {SECRET}",
        },
    )
    return stream.getvalue().strip()


def test_text_lines_carry_every_field_of_the_json_line(captured: io.StringIO) -> None:
    settings = Settings(log_format="text", forward_secret=SECRET, forward_url="https://a.example")
    line = emit(settings, captured)
    head, _, rest = line.partition(" poll.fetched ")
    assert head.endswith(" INFO receiver.test")
    assert rest.startswith("pid=")
    for pair in (
        "instance_id=i-1",
        "outcome=http_404",
        "duration_ms=12.5",
        'detail="two words, a \\"quote\\" and a=b"',
        'empty=""',
        "gave_up=false",
        'secret_seen="key [redacted]"',
    ):
        assert pair in rest, pair
    assert SECRET not in line


def test_json_lines_carry_the_same_fields(captured: io.StringIO) -> None:
    settings = Settings(forward_secret=SECRET, forward_url="https://a.example")
    line = json.loads(emit(settings, captured))
    assert (line["event"], line["instance_id"], line["outcome"]) == (
        "poll.fetched",
        "i-1",
        "http_404",
    )
    assert line["secret_seen"] == "key [redacted]"  # the forward secret is a secret too


def test_the_databases_password_never_reaches_a_log(captured: io.StringIO) -> None:
    settings = Settings(database_url="postgresql+psycopg://gbg:Pg-pass-7c1e@db.internal/gbg")
    configure_logging(settings, stream=captured)
    log.error("store.unavailable", extra={"error": "auth failed for gbg:Pg-pass-7c1e"})
    assert "Pg-pass-7c1e" not in captured.getvalue()
    assert "[redacted]" in captured.getvalue()


def accepted_line(captured: io.StringIO) -> dict[str, Any]:
    """The one ``webhook.accepted`` JSON line written so far."""
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    [accepted] = [line for line in lines if line["event"] == "webhook.accepted"]
    return accepted


def test_a_webhooks_lines_carry_its_request_id_and_only_its_own(
    captured: io.StringIO, services: Services
) -> None:
    configure_logging(services.settings, stream=captured)
    client = create_app(services=services).test_client()
    headers = {**basic(), "X-Request-ID": "req-7"}
    assert client.post(URL, json={"instanceId": "r-1"}, headers=headers).status_code == 202
    accepted = accepted_line(captured)
    assert accepted["request_id"] == "req-7"
    assert request_id.get() is None  # the next request's lines start without it


def test_a_webhooks_line_and_latency_metric_give_its_duration(
    captured: io.StringIO, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_logging(services.settings, stream=captured)
    client = create_app(services=services).test_client()
    clock = iter([100.0, 100.0123456])  # the start, the log line; the answer's metric after
    monkeypatch.setattr(webhook, "time", SimpleNamespace(perf_counter=lambda: next(clock, 100.02)))
    sample = (
        "gbg_receiver_http_request_seconds_sum",
        {"method": "POST", "endpoint": URL, "status": "202"},
    )
    before = REGISTRY.get_sample_value(*sample) or 0.0
    assert client.post(URL, json={"instanceId": "d-1"}, headers=basic()).status_code == 202
    accepted = accepted_line(captured)
    assert accepted["duration_ms"] == 12.35
    assert REGISTRY.get_sample_value(*sample) == pytest.approx(before + 0.02)
