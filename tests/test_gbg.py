"""The GBG client against the simulator over real HTTP."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from receiver.domain.model import COMPLETED, IN_PROGRESS
from receiver.errors import GbgAuthError, GbgRejected, GbgUnavailable
from receiver.gbg.client import retry_after
from receiver.gbg.states import parse_state
from receiver.testing.simulator import Fault, Simulator
from tests.appserver import trickle_headers
from tests.conftest import gbg_client


def test_one_token_serves_many_fetches_from_many_threads(sim: Simulator) -> None:
    client = gbg_client(sim)
    ids = [sim.create() for _ in range(20)]
    with ThreadPoolExecutor(8) as pool:
        states = list(pool.map(client.fetch_state, ids))
    assert {s.status for s in states} == {IN_PROGRESS}
    assert sim.token_requests == 1
    assert len(sim.fetches()) == 20


def test_expired_token_is_refreshed_once(sim: Simulator) -> None:
    client = gbg_client(sim)
    iid = sim.create()
    client.fetch_state(iid)
    sim.expire_tokens()
    client.fetch_state(iid)
    client.fetch_state(iid)
    assert sim.token_requests == 2
    assert [c["status"] for c in sim.fetches()] == [200, 401, 200, 200]


def test_a_second_401_is_an_auth_error(sim: Simulator) -> None:
    client = gbg_client(sim)
    sim.add_fault(Fault("401", count=2))
    with pytest.raises(GbgAuthError):
        client.fetch_state(sim.create())
    assert sim.token_requests == 2


def test_token_is_refreshed_shortly_before_it_expires(sim: Simulator) -> None:
    now = [0.0]
    sim.token_lifetime = 100
    client = gbg_client(sim, clock=lambda: now[0])
    iid = sim.create()
    client.fetch_state(iid)
    now[0] = 85.0
    client.fetch_state(iid)
    assert sim.token_requests == 1
    now[0] = 95.0  # within the last tenth of its life
    client.fetch_state(iid)
    assert sim.token_requests == 2


def test_password_grant_when_a_username_is_set(sim: Simulator) -> None:
    sim.username, sim.password = "api-user", "api-pass"
    client = gbg_client(sim, username="api-user", password="api-pass")
    assert client.fetch_state(sim.create()).status == IN_PROGRESS
    with pytest.raises(GbgAuthError):
        gbg_client(sim, username="api-user", password="wrong").fetch_state(sim.create())


def test_wrong_client_secret_is_an_auth_error(sim: Simulator) -> None:
    with pytest.raises(GbgAuthError):
        gbg_client(sim, client_secret="nope").token()


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_fetch_parses_both_api_versions(sim: Simulator, version: str) -> None:
    client = gbg_client(sim, api_version=version)
    iid, _ = client.start_journey(
        "age-check@latest", {"subject": {"identity": {"firstName": "Ada"}}}
    )
    assert client.fetch_state(iid).status == IN_PROGRESS
    sim.set_status(iid, "Completed", "Of Age")
    state = client.fetch_state(iid)
    assert state.status == COMPLETED
    assert state.gbg_status in ("Completed", "COMPLETED")  # both of GBG's spellings appear
    assert state.completed_at is not None
    assert state.journey
    assert state.journey["endedAt"]
    if version == "v2":
        assert state.outcome == "Of Age"
        assert state.journey["id"] == "age-check"
        assert state.result == {"status": "complete"}  # no code in its advice: left out
    assert sim.fetches(iid)[0]["version"] == version


def test_subject_is_dropped_unless_pii_storage_is_chosen(sim: Simulator) -> None:
    iid = sim.create(subject={"identity": {"firstName": "Ada", "dateOfBirth": "1815-12-10"}})
    sim.set_status(iid, "Completed", "Of Age")  # GBG shows the person once the journey ends
    dropped = gbg_client(sim).fetch_state(iid).document
    kept = gbg_client(sim, store_pii=True).fetch_state(iid).document
    assert dropped is not None
    assert "subject" not in dropped["context"]
    assert "Ada" not in str(dropped)
    assert kept is not None
    assert kept["context"]["subject"]["identity"]["firstName"] == "Ada"


@pytest.mark.parametrize(
    ("kind", "error", "error_kind"),
    [
        ("500", GbgUnavailable, "http_500"),
        ("502", GbgUnavailable, "http_502"),
        ("503", GbgUnavailable, "http_503"),
        ("429", GbgUnavailable, "http_429"),
        ("garbage", GbgUnavailable, "garbage"),
        ("404", GbgRejected, "http_404"),
    ],
)
def test_each_fault_is_its_own_error(
    sim: Simulator, kind: str, error: type[Exception], error_kind: str
) -> None:
    client = gbg_client(sim)
    iid = sim.create()
    sim.add_fault(Fault(kind, retry_after=7))
    with pytest.raises(error) as caught:
        client.fetch_state(iid)
    assert caught.value.kind == error_kind  # type: ignore[attr-defined]
    if kind == "429":
        assert caught.value.retry_after == 7  # type: ignore[attr-defined]
    assert client.fetch_state(iid).status == IN_PROGRESS  # one fault, then healthy


def test_slow_answer_is_a_timeout(sim: Simulator) -> None:
    client = gbg_client(sim, timeout=(1.0, 0.3))
    sim.add_fault(Fault("timeout", delay=1.0))
    with pytest.raises(GbgUnavailable) as caught:
        client.fetch_state(sim.create())
    assert caught.value.kind == "timeout"


def test_unknown_instance_is_rejected(sim: Simulator) -> None:
    with pytest.raises(GbgRejected) as caught:
        gbg_client(sim).fetch_state("never-started")
    assert caught.value.status == 404


def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before use: nothing listens there
    fake = Simulator()
    fake.base_url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    with pytest.raises(GbgUnavailable) as caught:
        gbg_client(fake).fetch_state("x")
    assert caught.value.kind == "token"  # the first call asks for a token, and fails there
    assert caught.value.wide  # GBG as a whole: no instance is charged for it


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    assert retry_after({"Retry-After": "12"}) == 12.0
    assert retry_after({}) is None
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, now) == 0.0
    assert retry_after({"Retry-After": "Fri, 15 Jan 2027 08:00:30 GMT"}, now) == 30.0


@pytest.mark.parametrize(
    "value", ["inf", "1e12", "nan", "soon", "61", "Fri, 15 Jan 2027 09:00:00 GMT", "-inf"]
)
def test_retry_after_is_bounded_to_a_minute(value: str) -> None:
    expected = 0.0 if value == "-inf" else 60.0
    assert retry_after({"Retry-After": value}, 1_800_000_000.0) == expected


@pytest.mark.parametrize("body", [{}, {"status": ""}, {"status": 5}])
def test_state_without_a_status_is_garbage(body: dict[str, object]) -> None:
    with pytest.raises(GbgUnavailable):
        parse_state(body)


def test_an_undocumented_status_is_an_error_never_an_ending() -> None:
    with pytest.raises(GbgUnavailable) as caught:
        parse_state({"status": "Paused", "instanceId": "u-1"})
    assert caught.value.kind == "unknown_status"
    assert not caught.value.wide  # the instance's error to count, under GBG's policy
    for spelling in ("InProgress", "IN_PROGRESS", "in_progress", "inprogress"):
        assert parse_state({"status": spelling}).status == IN_PROGRESS


def test_a_redirect_is_an_error_and_never_carries_the_credentials(sim: Simulator) -> None:
    seen: list[str] = []

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.rfile.read(int(self.headers["Content-Length"] or 0)).decode())
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    class Redirect(Elsewhere):
        def do_POST(self) -> None:
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{elsewhere.server_port}/steal")
            self.send_header("Content-Length", "0")
            self.end_headers()

    elsewhere = http.server.HTTPServer(("127.0.0.1", 0), Elsewhere)
    redirect = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
    for server in (elsewhere, redirect):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = gbg_client(sim, token_url=f"http://127.0.0.1:{redirect.server_port}/token")
        with pytest.raises(GbgUnavailable) as caught:
            client.fetch_state("r-1")
        assert caught.value.kind == "token"  # type: ignore[attr-defined]
        assert "307" in str(caught.value)
        state_client = gbg_client(sim, base_url=f"http://127.0.0.1:{redirect.server_port}")
        with pytest.raises(GbgUnavailable):
            state_client.fetch_state("r-1")
        assert seen == []  # neither the client secret nor the token went anywhere else
    finally:
        for server in (elsewhere, redirect):
            server.shutdown()
            server.server_close()


def test_the_gbg_session_keeps_a_connection_for_every_concurrent_fetch() -> None:
    from receiver.config import Settings
    from receiver.services import gbg_session

    session = gbg_session(Settings(poll_concurrency=32))
    adapter = session.get_adapter("https://eu.platform.go.gbgplc.com")
    assert adapter._pool_maxsize >= 32  # type: ignore[attr-defined]
    assert session.trust_env is False  # proxies read once, not on every call


class Trickle(http.server.BaseHTTPRequestHandler):
    """A GBG that answers 200 and then one byte every 0.3 s: each read is in time."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"] or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "40")
        self.end_headers()
        try:
            for byte in b'{"status": "InProgress", "x": "' + b"a" * 8:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.3)
        except OSError:
            pass  # the client gave up: as it should

    def log_message(self, *args: object) -> None:
        pass


def test_an_answer_trickling_in_is_cut_at_one_deadline(sim: Simulator) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = gbg_client(sim, base_url=f"http://127.0.0.1:{server.server_port}")
        client.timeout = (0.5, 1.0)  # every read within 1 s; the whole answer within 1.5 s
        started = time.monotonic()
        with pytest.raises(GbgUnavailable) as caught:
            client.fetch_state("t-1")
        assert caught.value.kind == "timeout"
        assert time.monotonic() - started < 2.5  # not the 12 s the trickle would take
    finally:
        server.shutdown()
        server.server_close()


class HeaderTrickle(http.server.BaseHTTPRequestHandler):
    """A GBG whose answer's headers come one byte every 0.3 s and never end."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"] or 0))
        trickle_headers(self, every=0.3)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("on", ["token", "fetch"])
def test_headers_trickling_in_are_cut_at_one_deadline(sim: Simulator, on: str) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HeaderTrickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    trickling = f"http://127.0.0.1:{server.server_port}"
    try:
        client = gbg_client(sim, **{"base_url" if on == "fetch" else "token_url": trickling})
        client.timeout = (0.5, 1.0)  # each byte is in time; the whole answer within 1.5 s
        started = time.monotonic()
        with pytest.raises(GbgUnavailable) as caught:
            client.fetch_state("t-1")
        assert time.monotonic() - started < 1.5 + 1  # not the 30 s the trickle would take
        assert caught.value.kind == ("timeout" if on == "fetch" else "token")
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("ended", [1e300, -5, "9999-99-99", 10**20])
def test_an_absurd_end_time_is_no_time(ended: object) -> None:
    body = {"status": "Completed", "context": {"process": {"journey": {"endedAt": ended}}}}
    assert parse_state(body).completed_at is None
    fine = {"status": "Completed", "metaData": {"completedTime": 1_790_000_000_000}}
    assert parse_state(fine).completed_at == 1_790_000_000.0  # milliseconds, as v1 may send
