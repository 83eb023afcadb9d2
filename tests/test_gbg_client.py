"""The GBG client against a scripted GBG, rule by rule: the token's grant, life and
refusals, which answers are errors of which kind, and whose state an answer is."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from receiver.errors import GbgAuthError, GbgRejected, GbgUnavailable
from receiver.gbg.client import MAX_ANSWER, GbgClient

FETCH = "/v2/captain/journey/state/fetch"
START = "/v2/captain/journey/start"
TOKEN = "/as/token.oauth2"
Answer = tuple[int, bytes, dict[str, str]]


def ok(body: Any) -> Answer:
    return 200, json.dumps(body).encode(), {}


@dataclass
class Gbg:
    """Answers each path from its script in turn (the last answer again when used up)."""

    script: dict[str, list[Answer]] = field(default_factory=dict)
    seen: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.seen]


@pytest.fixture
def gbg() -> Iterator[Gbg]:
    state = Gbg(
        script={
            TOKEN: [ok({"access_token": "t-1", "expires_in": 3600})],
            FETCH: [ok({"status": "InProgress"})],
        }
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"] or 0))
            state.seen.append((self.path, dict(self.headers), body))
            answers = state.script.get(self.path) or [ok({})]
            status, content, headers = answers.pop(0) if len(answers) > 1 else answers[0]
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_port}"
    yield state
    server.shutdown()
    server.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def client(gbg: Gbg, clock: Clock | None = None, **options: Any) -> GbgClient:
    return GbgClient(
        base_url=gbg.url + "/",  # a trailing slash is no second slash in the path
        token_url=gbg.url + TOKEN,
        client_id="id",
        client_secret="secret",
        clock=clock or Clock(),
        timeout=(1.0, 2.0),
        **options,
    )


def test_a_state_answer_for_another_instance_is_garbage(gbg: Gbg) -> None:
    gbg.script[FETCH] = [ok({"instanceId": "other", "status": "Completed"})]
    with pytest.raises(GbgUnavailable) as caught:
        client(gbg).fetch_state("mine")
    assert (str(caught.value), caught.value.kind) == (
        "state fetch answered for another instance",
        "garbage",
    )
    gbg.script[FETCH] = [ok({"instanceId": "mine", "status": "Completed"})]
    assert client(gbg).fetch_state("mine").status == "completed"
    gbg.script[FETCH] = [ok({"status": "Completed"})]  # v1 answers may not repeat the id
    assert client(gbg).fetch_state("mine").status == "completed"
    assert gbg.paths()[-1] == FETCH
    assert json.loads(gbg.seen[-1][2]) == {"instanceId": "mine"}


def test_the_token_lives_until_shortly_before_it_expires(gbg: Gbg) -> None:
    clock = Clock()
    gbg_client = client(gbg, clock)
    gbg.script[TOKEN] = [ok({"access_token": "t-1"})]  # no expires_in: an hour
    for at, requests in ((0.0, 1), (3539.9, 1), (3540.0, 2)):  # a minute early
        clock.now = at
        gbg_client.fetch_state("i-1")
        assert gbg_client.token_requests == requests == gbg.paths().count(TOKEN)
    gbg.script[TOKEN] = [ok({"access_token": "t-2", "expires_in": 100})]
    clock.now = 10_000.0
    gbg_client.fetch_state("i-1")
    for at, requests in ((10_089.9, 3), (10_090.0, 4)):  # a tenth of a short life early
        clock.now = at
        gbg_client.fetch_state("i-1")
        assert gbg_client.token_requests == requests
    [authorization] = {h["Authorization"] for p, h, _ in gbg.seen[-1:] if p == FETCH}
    assert authorization == "Bearer t-2"


@pytest.mark.parametrize("status", [400, 401, 403])
def test_the_token_endpoint_refusing_the_credentials_is_an_auth_error(
    gbg: Gbg, status: int
) -> None:
    gbg.script[TOKEN] = [(status, b"{}", {})]
    with pytest.raises(
        GbgAuthError, match=rf"^token endpoint refused the credentials \({status}\)$"
    ):
        client(gbg).fetch_state("i-1")


def test_a_base_url_with_a_path_and_a_trailing_slash_joins_with_one_slash(gbg: Gbg) -> None:
    gbg.script["/gbg" + FETCH] = [ok({"status": "Completed"})]
    GbgClient(
        base_url=gbg.url + "/gbg/",
        token_url=gbg.url + TOKEN,
        client_id="id",
        client_secret="secret",
        clock=Clock(),
    ).fetch_state("i-1")
    assert gbg.paths() == [TOKEN, "/gbg" + FETCH]


def test_a_token_endpoint_fault_is_named_as_the_token_endpoints(gbg: Gbg) -> None:
    gbg.script[TOKEN] = [(200, b" " * (MAX_ANSWER + 1), {})]
    with pytest.raises(GbgUnavailable) as caught:
        client(gbg).fetch_state("i-1")
    assert (str(caught.value), caught.value.kind) == ("token endpoint: answer too large", "token")


def test_the_token_endpoint_failing_stops_fetches_as_a_token_error(gbg: Gbg) -> None:
    for status, headers, wait in ((429, {"Retry-After": "7"}, 7.0), (503, {}, None)):
        gbg.script[TOKEN] = [(status, b"", headers)]
        with pytest.raises(GbgUnavailable) as caught:
            client(gbg).fetch_state("i-1")
        assert (str(caught.value), caught.value.kind, caught.value.retry_after) == (
            f"token endpoint: {status}",
            "token",
            wait,
        )
    gbg.script[TOKEN] = [(404, b"", {})]
    with pytest.raises(GbgRejected, match=r"^token endpoint: 404$"):
        client(gbg).fetch_state("i-1")


@pytest.mark.parametrize(
    "answer",
    [
        {"expires_in": 60},
        {"access_token": "", "expires_in": 60},
        {"access_token": "t", "expires_in": "1h"},
    ],
)
def test_a_token_answer_without_a_usable_token_is_a_token_error(
    gbg: Gbg, answer: dict[str, Any]
) -> None:
    gbg.script[TOKEN] = [ok(answer)]
    with pytest.raises(GbgUnavailable) as caught:
        client(gbg).fetch_state("i-1")
    assert (str(caught.value), caught.value.kind) == (
        "token endpoint answered without a token",
        "token",
    )


def test_the_grant_is_the_one_configured(gbg: Gbg) -> None:
    client(gbg).fetch_state("i-1")
    client(gbg, username="u", password="p").fetch_state("i-1")
    grants = [urllib.parse.parse_qs(body.decode()) for path, _, body in gbg.seen if path == TOKEN]
    assert grants == [
        {
            "client_id": ["id"],
            "client_secret": ["secret"],
            "grant_type": ["client_credentials"],
            "scope": ["gbg.token"],
        },
        {
            "client_id": ["id"],
            "client_secret": ["secret"],
            "grant_type": ["password"],
            "username": ["u"],
            "password": ["p"],
        },
    ]


def test_a_401_gets_one_fresh_token_and_one_more_try_only(gbg: Gbg) -> None:
    gbg.script[FETCH] = [(401, b"", {})]
    with pytest.raises(GbgAuthError, match=f"^{FETCH}: 401 with a fresh token$"):
        client(gbg).fetch_state("i-1")
    assert gbg.paths() == [TOKEN, FETCH, TOKEN, FETCH]


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (300, GbgUnavailable, "http_300"),  # a redirect is not followed
        (399, GbgUnavailable, "http_399"),
        (400, GbgRejected, None),
        (404, GbgRejected, None),
        (429, GbgUnavailable, "http_429"),
        (500, GbgUnavailable, "http_500"),
    ],
)
def test_each_answer_status_is_its_own_kind_of_error(
    gbg: Gbg, status: int, error: type[Exception], kind: str | None
) -> None:
    gbg.script[FETCH] = [(status, b"{}", {"Retry-After": "3"})]
    with pytest.raises(error) as caught:
        client(gbg).fetch_state("i-1")
    assert str(caught.value) == f"{FETCH}: {status}"
    if kind is not None:
        assert getattr(caught.value, "kind", None) == kind
        assert getattr(caught.value, "retry_after", None) == (3.0 if status == 429 else None)
    else:
        assert caught.value.status == status  # type: ignore[attr-defined]


@pytest.mark.parametrize("content", [b"[]", b"null", b"not json", b""])
def test_an_answer_that_is_no_json_object_is_garbage(gbg: Gbg, content: bytes) -> None:
    gbg.script[FETCH] = [(200, content, {})]
    with pytest.raises(GbgUnavailable) as caught:
        client(gbg).fetch_state("i-1")
    assert (str(caught.value), caught.value.kind) == (
        f"{FETCH}: the answer is not a JSON object",
        "garbage",
    )


def test_an_answer_larger_than_any_state_is_garbage(gbg: Gbg) -> None:
    gbg.script[FETCH] = [(200, b" " * (MAX_ANSWER + 1), {})]
    with pytest.raises(GbgUnavailable) as caught:
        client(gbg).fetch_state("i-1")
    assert caught.value.kind == "garbage"
    assert FETCH in str(caught.value)


@pytest.mark.parametrize(
    "answer",
    [
        b'{"status": NaN}',
        b'{"status": "Completed", "n": Infinity}',
        b'{"n": 1e999}',
        b'{"status": "Completed\\u0000"}',  # no PostgreSQL text holds a NUL
        b'{"status": "Completed", "context": {"x\\u0000": [1]}}',
    ],
)
def test_numbers_json_does_not_have_are_garbage(gbg: Gbg, answer: bytes) -> None:
    gbg.script[FETCH] = [(200, answer, {})]
    with pytest.raises(GbgUnavailable) as caught:
        client(gbg).fetch_state("n-1")
    assert caught.value.kind == "garbage"


@pytest.mark.parametrize(
    ("answer", "started"),
    [
        (
            {"instanceId": "s-1", "instanceUrl": "https://go.example/j/s-1"},
            ("s-1", "https://go.example/j/s-1"),
        ),
        ({"instanceId": "s-1", "instanceUrl": "http://127.0.0.1/j"}, ("s-1", "http://127.0.0.1/j")),
        ({"instanceId": "s-1", "instanceUrl": "javascript:alert(1)"}, ("s-1", None)),
        ({"instanceId": "s-1", "instanceUrl": 7}, ("s-1", None)),
        ({"instanceId": "s-1"}, ("s-1", None)),
        ({"instanceId": "../s-1", "instanceUrl": "https://go.example/j"}, None),
        ({"instanceId": 5}, None),
        ({}, None),
    ],
)
def test_a_start_answer_is_taken_only_with_a_valid_instance_id_and_a_web_link(
    gbg: Gbg, answer: dict[str, object], started: tuple[str, str | None] | None
) -> None:
    gbg.script[START] = [ok(answer)]
    if started is not None:
        assert client(gbg).start_journey("age@latest") == started
        return
    with pytest.raises(GbgUnavailable) as caught:
        client(gbg).start_journey("age@latest")
    assert (str(caught.value), caught.value.kind) == (
        "journey start answered without an instanceId",
        "garbage",
    )


def test_no_caller_waits_past_its_deadline_for_another_callers_token(gbg: Gbg) -> None:
    gbg_client = client(gbg)
    gbg_client.timeout = (0.2, 0.3)
    outcome: list[BaseException] = []

    def fetch() -> None:
        try:
            gbg_client.fetch_state("w-1")
        except GbgUnavailable as exc:
            outcome.append(exc)

    with gbg_client._lock:  # another caller's token request, under way for ever
        waiting = threading.Thread(target=fetch, daemon=True)
        waiting.start()
        waiting.join(10)
        assert not waiting.is_alive()
    [error] = outcome
    assert isinstance(error, GbgUnavailable)
    assert (error.kind, str(error)) == ("token", "token endpoint: no token in time")
    assert gbg.paths() == []  # it gave up rather than ask alongside
