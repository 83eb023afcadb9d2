"""POST /webhooks/gbg through the Flask test client."""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import re
import time

import pytest
from werkzeug.test import EnvironBuilder

from receiver import usecases
from receiver.config import Settings
from receiver.log import LOGGED
from receiver.migrations import upgrade
from receiver.services import Services, build_services
from receiver.store import Store, writerqueue
from receiver.web import create_app
from tests.conftest import WEBHOOK_PASS, WEBHOOK_USER, with_settings

URL = "/webhooks/gbg"


def basic(user: str = WEBHOOK_USER, password: str = WEBHOOK_PASS) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def nothing_stored(store: Store) -> bool:
    page = store.page(status=None, limit=10, after=None)
    inbox = store.snapshot(0.0)["inbox_depth"]
    return page == [] and inbox == 0 and store.events_after(0, 10) == []


def test_accepted_once_in_the_inbox_and_folded_by_a_worker(  # type: ignore[no-untyped-def]
    client, services: Services, store: Store, clock
) -> None:
    body = {"instanceId": "abc-123", "status": "Completed", "message": "done"}
    answer = client.post(URL, json=body, headers=basic())
    assert answer.status_code == 202
    assert answer.data == b'{"instanceId":"abc-123"}\n'
    assert answer.headers["Content-Length"] == str(len(answer.data))
    [waiting] = store.deliveries_for("abc-123")
    assert waiting["folded_at"] is None  # committed before the 202, folded later
    assert store.get("abc-123") is None
    clock.advance(0.05)
    assert usecases.fold_inbox(services) == 1
    instance = store.get("abc-123")
    assert instance is not None
    assert instance.status == "in_progress"  # the webhook alone never finalises
    assert instance.webhook_claim == "Completed"
    # The confirming fetch is due RECEIVER_CONFIRM_DELAY after the webhook arrived.
    assert instance.next_poll_at == clock() - 0.05 + 1.0
    [stored] = store.deliveries_for("abc-123")
    # Without RECEIVER_STORE_PII only the allow-listed fields stay: the free text goes.
    assert json.loads(stored["body"]) == {"instanceId": "abc-123", "status": "Completed"}
    assert "Authorization" not in stored["headers"]
    assert stored["peer"] == "127.0.0.1"


def test_one_line_per_webhook_and_the_inbox_keeps_it_compact(  # type: ignore[no-untyped-def]
    client, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    long_claim = "C" * 100
    for body in (
        {"instanceId": "line-1", "status": "Completed"},
        {"instanceId": "line-2", "status": long_claim},
        {"instanceId": "line-3"},
    ):
        answer = client.post(URL, json=body, headers=basic() | {"Host": "hooks.example"})
        assert answer.status_code == 202
    [first, *_] = [r for r in caplog.records if r.getMessage() == "webhook.accepted"]
    assert (first.status, first.instance_id, first.peer) == (202, "line-1", "127.0.0.1")  # type: ignore[attr-defined]
    assert (first.scheme, first.host) == ("http", "hooks.example")  # type: ignore[attr-defined]
    assert isinstance(first.duration_ms, float)  # type: ignore[attr-defined]
    assert len([r for r in caplog.records if r.getMessage() == "webhook.accepted"]) == 3
    [kept] = store.deliveries_for("line-1")
    assert kept["body"] == b'{"instanceId":"line-1","status":"Completed"}'  # minimised, compact
    assert [d["claim"] for d in store.deliveries_for("line-2")] == [long_claim[:64]]
    assert [d["claim"] for d in store.deliveries_for("line-3")] == [None]  # no status: none


PERSONAL_BODY = {
    "instanceId": "pii-1",
    "status": "Completed",
    "message": "for Ada Lovelace",
    "context": {
        "subject": {"identity": {"firstName": "Ada", "dateOfBirth": "1815-12-10"}},
        "process": {
            "journey": {"name": "Age check", "id": "age", "version": "3"},
            "steps": [
                {
                    "nodeId": "doc",
                    "result": {
                        "status": "complete",
                        "outcome": "Of Age",
                        "note": {"idNumber": "AB123456C"},
                        "advice": {
                            "age_result_capabilities": ["resultcode.confirm.age", "Ada Lovelace"],
                            "name": "Ada",
                        },
                    },
                }
            ],
        },
    },
}


@pytest.mark.parametrize("store_pii", [False, True])
def test_a_webhook_body_is_reduced_to_the_allow_list_unless_pii_storage_is_chosen(  # type: ignore[no-untyped-def]
    client, services: Services, store: Store, store_pii: bool
) -> None:
    with_settings(services, store_pii=store_pii)
    extra = {"X-Auth-Token": "t0ken-value", "Api-Key": "k3y-value", "X-Request-Id": "r-1"}
    assert client.post(URL, json=PERSONAL_BODY, headers=basic() | extra).status_code == 202
    [stored] = store.deliveries_for("pii-1")
    assert stored["headers"] == {
        "Content-Type": "application/json",
        "Content-Length": str(len(json.dumps(PERSONAL_BODY))),
        "User-Agent": stored["headers"]["User-Agent"],
        "X-Request-Id": "r-1",
    }  # an allow-list: unknown headers (tokens among them) never stay
    if store_pii:
        assert json.loads(stored["body"]) == PERSONAL_BODY
        return
    assert json.loads(stored["body"]) == {
        "instanceId": "pii-1",
        "status": "Completed",
        "context": {
            "process": {
                "journey": {"name": "Age check", "id": "age", "version": "3"},
                "steps": [
                    {
                        "nodeId": "doc",
                        "result": {
                            "status": "complete",
                            "outcome": "Of Age",
                            "advice": {"age_result_capabilities": ["resultcode.confirm.age"]},
                        },
                    }
                ],
            }
        },
    }


def test_duplicate_webhook_is_acknowledged_and_harmless(  # type: ignore[no-untyped-def]
    client, services: Services, store: Store
) -> None:
    for _ in range(3):
        assert client.post(URL, json={"instanceId": "dup-1"}, headers=basic()).status_code == 202
    assert usecases.fold_inbox(services) == 3
    assert len(store.deliveries_for("dup-1")) == 3
    assert store.events_after(0, 10) == []
    page = store.page(status=None, limit=10, after=None)
    assert len(page) == 1


@pytest.mark.parametrize(
    ("body", "query"),
    [
        ({"instanceId": "id-a"}, ""),
        ({"instance_id": "id-a"}, ""),
        ({"data": {"instanceId": "id-a"}}, ""),
        ({"context": {"process": {"instance": {"id": "id-a"}}}}, ""),
        ({"context": {"process": {"instance": {"instanceId": "id-a"}}}}, ""),
        ({"status": "Completed"}, "?instanceId=id-a"),
        ({"instanceId": "id-a", "data": {"instanceId": "other"}}, "?instanceId=x"),
    ],
)
def test_instance_id_is_found_in_every_listed_place(client, store, body, query) -> None:  # type: ignore[no-untyped-def]
    assert client.post(URL + query, json=body, headers=basic()).get_json() == {"instanceId": "id-a"}
    assert [d["instance_id"] for d in store.deliveries_for("id-a")] == ["id-a"]


def test_any_content_type_that_parses_is_accepted(client, store) -> None:  # type: ignore[no-untyped-def]
    answer = client.post(
        URL, data=b'{"instanceId": "ct-1"}', headers=basic() | {"Content-Type": "text/plain"}
    )
    assert answer.status_code == 202


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic(password="wrong"),
        basic(user="other"),
        {"Authorization": "Bearer " + WEBHOOK_PASS},
        {"Authorization": "Basic !!!notbase64"},
        {"Authorization": "Basic " + base64.b64encode(WEBHOOK_USER.encode()).decode()},
    ],
)
def test_missing_or_wrong_credentials_are_401_and_store_nothing(  # type: ignore[no-untyped-def]
    client, store, headers, caplog: pytest.LogCaptureFixture
) -> None:
    answer = client.post(URL, json={"instanceId": "x-1"}, headers=headers)
    assert answer.status_code == 401
    assert answer.mimetype == "application/problem+json"
    assert answer.get_json() == {
        "type": "/problems/unauthorized",
        "title": "Unauthorized",
        "status": 401,
        "detail": "missing or wrong credentials",
    }
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="gbg-receiver"'
    assert nothing_stored(store)
    [refused] = [r for r in caplog.records if r.getMessage() == "webhook.unauthorized"]
    assert (refused.levelname, refused.peer) == ("WARNING", "127.0.0.1")  # type: ignore[attr-defined]


def test_basic_credentials_are_read_as_the_scheme_says(services: Services) -> None:
    """Any case of "Basic", more than one space before the credentials, a password with
    colons in it; but no characters outside base64."""
    password = "pass:word:with-colons-0123456789"
    with_settings(services, webhook_password=password)
    client = create_app(services=services).test_client()
    encoded = base64.b64encode(f"{WEBHOOK_USER}:{password}".encode()).decode()
    for header, status in (
        ("Basic " + encoded, 202),
        ("basic " + encoded, 202),
        ("BASIC   " + encoded, 202),
        ("Basic " + encoded[:4] + "!" + encoded[4:], 401),  # not base64: never "cleaned up"
        ("Bearer " + encoded, 401),
        (encoded, 401),
    ):
        answer = client.post(URL, json={"instanceId": "b-1"}, headers={"Authorization": header})
        assert answer.status_code == status, header


def test_auth_none_still_checks_credentials_once_they_are_configured(services: Services) -> None:
    with_settings(services, webhook_auth="none", gbg_base_url="http://127.0.0.1:9")
    client = create_app(services=services).test_client()
    assert client.post(URL, json={"instanceId": "n-1"}).status_code == 401
    assert client.post(URL, json={"instanceId": "n-1"}, headers=basic()).status_code == 202


@pytest.mark.parametrize(
    "raw",
    [
        b'{"instanceId": "n-1", "status": "Completed\\u0000"}',
        b'{"instanceId": "n-1", "data": {"k\\u0000": ["x"]}}',
        b'{"instanceId": "n-1\\u0000"}',
    ],
)
def test_a_nul_character_is_a_422_and_stores_nothing(  # type: ignore[no-untyped-def]
    client, store: Store, raw: bytes
) -> None:
    answer = client.post(URL, data=raw, headers=basic() | {"Content-Type": "application/json"})
    assert answer.status_code == 422
    assert answer.get_json()["detail"] == "a string holds a NUL character"
    assert nothing_stored(store)
    escaped = b'{"instanceId": "n-2", "note": "\\\\u0000 is only text"}'  # a backslash, no NUL
    assert client.post(URL, data=escaped, headers=basic()).status_code == 202


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"{oops", 400),
        (b"", 400),
        (b"\xff\xfe{}", 400),
        (b"[" * 100_000 + b"]" * 100_000, 400),
        (b"[" * 5000 + b"]" * 5000, 400),
        (b"[1, 2]", 422),
        (b'"instanceId"', 422),
        (b'{"status": "Completed"}', 422),
        (b'{"instanceId": ""}', 422),
        (b'{"instanceId": 42}', 422),
        (b'{"instanceId": "a/b"}', 422),
        (b'{"instanceId": "../../etc/passwd"}', 422),
        (b'{"instanceId": "x\'; DROP TABLE instances;--"}', 422),
        (b'{"instanceId": "line\\nbreak"}', 422),
        (json.dumps({"instanceId": "x" * 129}).encode(), 422),
    ],
)
def test_bad_bodies_get_a_problem_and_store_nothing(client, store, raw, status) -> None:  # type: ignore[no-untyped-def]
    answer = client.post(URL, data=raw, headers=basic() | {"Content-Type": "application/json"})
    assert answer.status_code == status
    assert answer.mimetype == "application/problem+json"
    assert answer.get_json()["status"] == status
    if status == 422:
        payload = json.loads(raw)
        assert (answer.get_json()["title"], answer.get_json()["detail"]) == (
            ("Unprocessable body", "the body must be a JSON object")
            if not isinstance(payload, dict)
            else ("Missing instance id", "no instanceId in the body or query string")
            if "instanceId" not in payload
            else ("Invalid instance id", "ids are 1-128 characters of A-Z a-z 0-9 . _ : @ -")
        )
        invalid = isinstance(payload, dict) and "instanceId" in payload
        assert answer.get_json().get("field") == ("instanceId" if invalid else None)
    assert nothing_stored(store)


def test_an_accepted_webhook_tells_the_access_log_it_logged_itself(services: Services) -> None:
    """gunicorn's access log skips a request the app marked: one line per webhook."""
    app = create_app(services=services)
    environ = EnvironBuilder(
        path=URL, method="POST", json={"instanceId": "marked-1"}, headers=basic()
    ).get_environ()
    statuses: list[str] = []
    b"".join(app.wsgi_app(environ, lambda status, headers: statuses.append(status)))
    assert statuses == ["202 Accepted"]
    assert environ[LOGGED] is True
    refused = EnvironBuilder(path=URL, method="POST", json={"instanceId": "m-2"}).get_environ()
    b"".join(app.wsgi_app(refused, lambda status, headers: statuses.append(status)))
    assert statuses[-1] == "401 Unauthorized"
    assert LOGGED not in refused  # a refusal has no line of its own: the access log's stands


@pytest.mark.parametrize("terminated", [False, True])
def test_a_body_of_exactly_the_limit_is_taken_and_one_byte_more_is_413(
    services: Services, store: Store, terminated: bool
) -> None:
    """``terminated``: as under gunicorn, which ends the body at its Content-Length
    itself (``wsgi.input_terminated``), so the body is read straight from the server."""
    client = create_app(services=with_settings(services, max_body_bytes=100)).test_client()
    environ = {"wsgi.input_terminated": True} if terminated else {}
    for size, status in ((100, 202), (101, 413)):
        pad = "x" * (size - len(json.dumps({"instanceId": f"e-{size}", "p": ""})))
        raw = json.dumps({"instanceId": f"e-{size}", "p": pad}).encode()
        assert len(raw) == size
        headers = basic() | {"Content-Type": "application/json"}
        answer = client.post(URL, data=raw, headers=headers, environ_overrides=environ)
        assert answer.status_code == status, size


def test_body_over_the_limit_is_413(services: Services, store: Store) -> None:
    client = create_app(services=with_settings(services, max_body_bytes=100)).test_client()
    ok = client.post(URL, json={"instanceId": "s-1"}, headers=basic())
    big = client.post(URL, json={"instanceId": "s-2", "pad": "x" * 100}, headers=basic())
    assert (ok.status_code, big.status_code) == (202, 413)
    assert big.mimetype == "application/problem+json"
    assert store.deliveries_for("s-2") == []


@pytest.fixture
def api_key_client(services: Services):  # type: ignore[no-untyped-def]
    changed = with_settings(
        services,
        webhook_username=None,
        webhook_password=None,
        webhook_api_key="k-77f1-0b2e-44c9-9a1d-63f8e5",
        webhook_api_key_header="X-GBG-Key",
    )
    return create_app(services=changed).test_client()


def test_api_key_in_the_configured_header(api_key_client, store) -> None:  # type: ignore[no-untyped-def]
    ok = api_key_client.post(
        URL, json={"instanceId": "k-1"}, headers={"X-GBG-Key": "k-77f1-0b2e-44c9-9a1d-63f8e5"}
    )
    wrong = api_key_client.post(URL, json={"instanceId": "k-2"}, headers={"X-GBG-Key": "k-77f2"})
    other_header = api_key_client.post(
        URL, json={"instanceId": "k-3"}, headers={"X-API-Key": "k-77f1-0b2e-44c9-9a1d-63f8e5"}
    )
    assert (ok.status_code, wrong.status_code, other_header.status_code) == (202, 401, 401)
    assert wrong.headers["WWW-Authenticate"] == 'ApiKey header="X-GBG-Key"'
    assert "X-Gbg-Key" not in store.deliveries_for("k-1")[0]["headers"]
    assert store.deliveries_for("k-2") == []
    assert store.deliveries_for("k-3") == []


def test_api_key_in_authorization_basic_may_be_base64(services: Services) -> None:
    client = create_app(
        services=with_settings(
            services,
            webhook_username=None,
            webhook_password=None,
            webhook_api_key="k-77f1-0b2e-44c9-9a1d-63f8e5",
            webhook_api_key_header="Authorization",
        )
    ).test_client()
    encoded = "Basic " + base64.b64encode(b"k-77f1-0b2e-44c9-9a1d-63f8e5").decode()
    assert (
        client.post(URL, json={"instanceId": "b-1"}, headers={"Authorization": encoded}).status_code
        == 202
    )
    assert (
        client.post(
            URL,
            json={"instanceId": "b-2"},
            headers={"Authorization": "k-77f1-0b2e-44c9-9a1d-63f8e5"},
        ).status_code
        == 202
    )
    assert (
        client.post(
            URL, json={"instanceId": "b-3"}, headers={"Authorization": "Basic eA=="}
        ).status_code
        == 401
    )


def test_auth_none_accepts_unauthenticated_webhooks_and_says_so_loudly(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    demo = with_settings(
        services,
        webhook_auth="none",
        webhook_username=None,
        webhook_password=None,
        gbg_base_url="http://127.0.0.1:8001",
    )
    client = create_app(services=demo).test_client()
    assert client.post(URL, json={"instanceId": "open-1"}).status_code == 202
    [warning] = [r for r in caplog.records if r.getMessage() == "webhook.unauthenticated"]
    assert warning.levelname == "WARNING"


def test_store_down_is_503_with_retry_after(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    down = build_services(
        # Nothing listens on port 9: connecting fails at once, as with a dead database.
        Settings(**{**settings.__dict__, "database_url": "postgresql+psycopg://u@127.0.0.1:9/x"})
    )
    client = create_app(services=down).test_client()
    answer = client.post(URL, json={"instanceId": "down-1"}, headers=basic())
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"
    assert answer.mimetype == "application/problem+json"
    [line] = [r for r in caplog.records if r.getMessage() == "store.unavailable"]
    assert line.path == URL  # type: ignore[attr-defined]
    assert line.error not in ("", "None")  # type: ignore[attr-defined]  # the store's cause
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_a_writer_lock_held_by_another_process_is_awaited_briefly_then_503(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writerqueue, "WRITE_WAIT", 0.5)
    services = build_services(settings)
    upgrade(services.store.engine)
    writers = services.store.db._writers
    client = create_app(services=services).test_client()
    held = os.open(writers.path, os.O_RDWR | os.O_CREAT, 0o600)  # another open file: as
    try:  # another process's flock would be
        fcntl.flock(held, fcntl.LOCK_EX)
        for n in range(2):  # the second finds this process's queue still waiting
            started = time.monotonic()
            answer = client.post(URL, json={"instanceId": f"w-{n}"}, headers=basic())
            assert time.monotonic() - started < 0.5 + 1
            assert (answer.status_code, answer.headers["Retry-After"]) == (503, "5")
            assert answer.mimetype == "application/problem+json"
    finally:
        fcntl.flock(held, fcntl.LOCK_UN)
        os.close(held)
    for _ in range(100):  # the abandoned wait lets go as soon as the lock is free
        answer = client.post(URL, json={"instanceId": "w-after"}, headers=basic())
        if answer.status_code == 202:
            break
        time.sleep(0.05)
    assert answer.status_code == 202
    assert [d["instance_id"] for d in services.store.deliveries_for("w-after")] == ["w-after"]
    assert services.store.deliveries_for("w-0") == []  # a 503 keeps nothing


def test_request_id_is_echoed_or_made(client) -> None:  # type: ignore[no-untyped-def]
    given = client.get("/healthz", headers={"X-Request-ID": "req-42"})
    made = client.get("/healthz")
    assert given.headers["X-Request-ID"] == "req-42"
    assert len(made.headers["X-Request-ID"]) == 32
    # The webhook, answered in front of Flask, does the same, refusals included.
    hook = {"X-Request-ID": "req-43", **basic()}
    assert (
        client.post(URL, json={"instanceId": "r-1"}, headers=hook).headers["X-Request-ID"]
        == "req-43"
    )
    refused = client.post(URL, json={"instanceId": "r-1"}, headers={"X-Request-ID": "req-44"})
    assert (refused.status_code, refused.headers["X-Request-ID"]) == (401, "req-44")
    assert len(client.post(URL, json={}, headers=basic()).headers["X-Request-ID"]) == 32


def test_only_post_is_allowed_on_the_webhook(client, store: Store) -> None:  # type: ignore[no-untyped-def]
    for method in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS"):
        answer = client.open(URL, method=method, headers=basic())
        assert answer.status_code == 405, method
        assert answer.headers["Allow"] == "POST"
        assert answer.mimetype == "application/problem+json"
    assert client.get(URL).get_json()["type"] == "about:blank"
    assert client.post(URL + "/", json={"instanceId": "x"}, headers=basic()).status_code == 404
    assert nothing_stored(store)


def test_a_bug_while_accepting_is_a_logged_500_and_counted(  # type: ignore[no-untyped-def]
    client, services: Services, monkeypatch, caplog
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    def failures() -> float:
        text = services.metrics.render(services.store, services.clock)[0].decode()
        found = re.search(r'^gbg_receiver_webhooks_total\{outcome="500"\} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    before = failures()
    monkeypatch.setattr(usecases, "record_webhook", broken)
    answer = client.post(URL, json={"instanceId": "b-1"}, headers=basic())
    assert answer.status_code == 500
    assert answer.get_json() == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": answer.get_json()["detail"],
    }
    [record] = [r for r in caplog.records if r.getMessage() == "http.unhandled"]
    assert (record.path, record.method) == (URL, "POST")  # type: ignore[attr-defined]
    assert record.exc_info is not None
    assert "a bug" in str(record.exc_info[1])
    assert failures() == before + 1


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b'{"instanceId": "n-1", "x": NaN}', 400),  # not JSON, though Python reads it
        (b'{"instanceId": "n-1", "x": -Infinity}', 400),
        (b'{"instanceId": "n-1", "x": 1e999}', 422),  # JSON, but no number can hold it
    ],
)
def test_numbers_json_has_not_or_no_float_holds_store_nothing(  # type: ignore[no-untyped-def]
    client, store: Store, raw: bytes, status: int
) -> None:
    answer = client.post(URL, data=raw, headers=basic() | {"Content-Type": "application/json"})
    assert answer.status_code == status
    assert answer.mimetype == "application/problem+json"
    assert nothing_stored(store)
