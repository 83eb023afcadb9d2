"""Hostile input against gunicorn: never a 5xx, nothing stored for what is refused,
memory bounded."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import API_TOKEN, WEBHOOK_PASS, WEBHOOK_USER
from tests.processes import Proc, base_env, run, start_web

pytestmark = [pytest.mark.reliability, pytest.mark.live]

GOOD = "Basic " + base64.b64encode(f"{WEBHOOK_USER}:{WEBHOOK_PASS}".encode()).decode()
TALLY: Counter[int] = Counter()
ACCEPTED: set[str] = set()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("hostile")
    env = base_env(tmp, RECEIVER_WEB_WORKERS="2")
    assert run(["migrate"], env).returncode == 0
    started: list[Proc] = []
    try:
        web, base = start_web(env, tmp / "web.log", started)
        port = int(base.rsplit(":", 1)[1])
        yield {"port": port, "db": env["RECEIVER_DATABASE_URL"], "web": web}
    finally:
        for proc in started:
            proc.stop()


def raw(port: int, request: bytes, *, timeout: float = 10) -> int:
    """Send bytes as they are; answer the status code (0: the server closed on us)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(request)
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
    status = data.split(b" ", 2)[1] if data.startswith(b"HTTP/") else b"0"
    code = int(status) if status.isdigit() else 0
    TALLY[code] += 1
    return code


def http(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> int:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: receiver",
        "Connection: close",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return raw(port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def hook(
    port: int, body: bytes, headers: dict[str, str] | None = None, path: str = "/webhooks/gbg"
) -> int:
    code = http(port, "POST", path, body, {"Authorization": GOOD, **(headers or {})})
    if code == 202:
        ACCEPTED.add(json.loads(body).get("instanceId") or path.split("instanceId=")[1])
    return code


CORPUS_IDS = [
    "../../etc/passwd",
    "a/b",
    "x' OR '1'='1",
    "1; DROP TABLE instances;--",
    "line\nbreak",
    "tab\there",
    "nul\u0000byte",
    "ünïcode",
    "a" * 129,
    "",
    " ",
    "%2e%2e",
    "<script>",
    "${jndi:ldap://x}",
    "id\r\nX-Injected: 1",
]


def test_fixed_corpus(server: dict[str, Any], figure) -> None:  # type: ignore[no-untyped-def]
    port = server["port"]
    sent = 0
    wrong = [
        "",
        "Basic",
        "Basic !!!",
        "Basic " + base64.b64encode(b"gbg-hook").decode(),
        "Basic " + base64.b64encode(f"{WEBHOOK_USER}:{WEBHOOK_PASS}x".encode()).decode(),
        "Basic " + base64.b64encode(f"{WEBHOOK_USER}:{WEBHOOK_PASS[:-1]}".encode()).decode(),
        "Bearer " + WEBHOOK_PASS,
        "basic " + "A" * 6000,
        "Digest username=x",
    ]
    for value in wrong:
        assert (
            http(
                port,
                "POST",
                "/webhooks/gbg",
                b'{"instanceId":"auth-x"}',
                {"Authorization": value} if value else {},
            )
            == 401
        )
        sent += 1
    for bad_id in CORPUS_IDS:
        assert hook(port, json.dumps({"instanceId": bad_id}).encode()) == 422
        sent += 1
    bodies = {
        b"": 400,
        b"{": 400,
        b"\xff\xfe\xfd": 400,
        b"null": 422,
        b"[]": 422,
        b"1e999999": 422,
        b'"text"': 422,
        b"[" * 200_000 + b"]" * 200_000: 400,
        b'{"instanceId": "ok-nested", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}": 400,
        json.dumps(
            {_b36(n): 0 for n in range(100_000)} | {"instanceId": "ok-wide"}, separators=(",", ":")
        ).encode(): 202,
        json.dumps({"instanceId": "ok-big", "pad": "x" * (2 << 20)}).encode(): 413,
    }
    for body, expected in bodies.items():
        assert hook(port, body) == expected, body[:40]
        sent += 1
    for content_type in (
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "",
        "application/json; charset=latin-1",
    ):
        assert hook(port, b'{"instanceId": "ok-ct"}', {"Content-Type": content_type}) == 202
        sent += 1
    # Header injection: CR/LF inside a header value is refused by the HTTP parser.
    code = raw(
        port,
        b"POST /webhooks/gbg HTTP/1.1\r\nHost: r\r\nAuthorization: "
        + GOOD.encode()
        + b"\r\nX-Evil: a\rb\r\nContent-Length: 2\r\n\r\n{}",
    )
    assert code in (400, 0)
    # A chunked body far past the limit.
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(40)) + b"0\r\n\r\n"
    assert (
        raw(
            port,
            b"POST /webhooks/gbg HTTP/1.1\r\nHost: r\r\nAuthorization: "
            + GOOD.encode()
            + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
            + body,
        )
        == 413
    )
    # API token brute force: every guess is refused (test_trust checks that the comparison
    # runs in constant time, by the comparison used).
    for _ in range(300):
        assert (
            http(
                port,
                "GET",
                "/api/v1/events",
                headers={"Authorization": "Bearer " + secrets.token_urlsafe(len(API_TOKEN))},
            )
            == 401
        )
    sent += 303
    figure(f"hostile corpus: {sent} requests, statuses {dict(sorted(TALLY.items()))}")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(
            st.sampled_from(["instanceId", "instance_id", "status", "data"]),
            json_values,
            max_size=3,
        ).map(lambda v: json.dumps(v).encode()),
    ),
    auth=st.sampled_from([GOOD, "", "Basic x", GOOD + "x"]),
    query=st.sampled_from(["", "?instanceId=q-1", "?instanceId=../x", "?instanceId="]),
)
def test_generated_requests_never_fail_the_server(
    server: dict[str, Any], body: bytes, auth: str, query: str
) -> None:
    code = hook(
        server["port"],
        body,
        {"Authorization": auth} if auth else {"Authorization": ""},
        path="/webhooks/gbg" + query,
    )
    assert code in (202, 400, 401, 413, 422), code


def test_slow_senders_do_not_break_the_service(server: dict[str, Any], figure) -> None:  # type: ignore[no-untyped-def]
    port = server["port"]
    slow = []
    for n in range(3):  # fewer than the threads; holding them all is nginx's job to prevent
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(
            b"POST /webhooks/gbg HTTP/1.1\r\nHost: r\r\nAuthorization: "
            + GOOD.encode()
            + b"\r\nContent-Length: 100\r\n\r\n"
            + b'{"instanceId": "slow-%d", ' % n
        )
        slow.append(sock)
    ok = []
    for n in range(20):  # others are served meanwhile
        started = time.monotonic()
        assert hook(port, json.dumps({"instanceId": f"during-slow-{n}"}).encode()) == 202
        ok.append(time.monotonic() - started)
    for sock in slow:
        sock.close()  # they give up: nothing was complete, nothing is stored
    assert stored_ids(server["db"]) >= {f"during-slow-{n}" for n in range(20)}
    assert not {i for i in stored_ids(server["db"]) if i.startswith("slow-")}
    figure(
        f"slow senders: 3 connections dribbling bodies; 20 other webhooks answered 202 in "
        f"max {max(ok) * 1000:.0f} ms"
    )


def test_nothing_stored_but_what_was_accepted_and_memory_bounded(
    server: dict[str, Any], figure
) -> None:  # type: ignore[no-untyped-def]
    # Its own mix first, so that it checks something in any order, alone too.
    port = server["port"]
    for n in range(20):
        assert hook(port, json.dumps({"instanceId": f"mix-{n}"}).encode()) == 202
        assert hook(port, b'{"instanceId": "mix-x"}', {"Authorization": "Basic eDp5"}) == 401
        assert hook(port, b'{"instanceId": "mix-', {}) == 400
        assert hook(port, json.dumps({"instanceId": f"../mix-{n}"}).encode()) == 422
    received = stored_ids(server["db"])
    engine = sa.create_engine(server["db"])
    with engine.connect() as conn:
        deliveries = conn.execute(sa.text("SELECT count(*) FROM deliveries")).scalar()
    engine.dispose()
    assert received == ACCEPTED  # the inbox holds what was acknowledged, and nothing else
    assert deliveries == TALLY[202]
    web: Proc = server["web"]
    workers = [
        int(p)
        for p in Path(f"/proc/{web.popen.pid}/task/{web.popen.pid}/children").read_text().split()
    ]
    rss = max(_rss_mib(p) for p in workers)
    assert rss < 250
    assert TALLY.keys() <= {0, 202, 400, 401, 413, 422}
    failures = sum(v for k, v in TALLY.items() if k >= 500)
    figure(
        f"hostile totals: {sum(TALLY.values())} requests, {failures} x 5xx, {TALLY[202]} "
        f"accepted = {deliveries} rows, largest worker RSS {rss:.0f} MiB"
    )


def stored_ids(url: str) -> set[str]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        ids = set(conn.execute(sa.text("SELECT instance_id FROM deliveries")).scalars())
    engine.dispose()
    return ids


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
